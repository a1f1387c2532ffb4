"""Benchmark: `audiotoken generate` against the paper's own inference loop, side by side.

The paper's loop, re-implemented here from its description (our code, not theirs): for every
clip a new ``StableDiffusionPipeline.from_pretrained`` (so the safety checker is loaded again
each time), the clip's token written into a new embedding row, one image at batch 1 in float32
with the model's PNDM scheduler. Against it: ``generate_files`` (what the CLI runs) with the
same scheduler, steps, guidance, size, clips and safety checker, at ``--batch``.

    python benchmarks/generate.py                 # CPU: a reduced random SD, a few minutes
    python benchmarks/generate.py --device cuda   # GPU: SD 1.4's full size, fp16, batch 8

Each measurement runs in a fresh process (``--worker``), so peak RSS is that run's own. Printed:
images/s of each and the ratio; the share of wall time inside the UNet (a timer around
``UNet2DConditionModel.forward``, synchronised on CUDA); time to the first PNG; peak RSS (and
CUDA's peak); how peak RSS and time to first image change from 12 clips to 48; ``--fast`` against
the default (dpm++ 25 steps, guidance 7.5) on the same clips; on a GPU, the UNet's model-FLOP
utilisation (FLOPs counted by torch's FlopCounterMode over one call, against ``--peak-tflops``).
The weights are random (the architecture sets the cost, not the values); wall time includes
loading the models, as a user's run does. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # factories: tiny weights in their real formats
sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------------------------
# Models (random weights, real formats)

def build_models(folder: Path, full_size: bool, with_fast: bool) -> dict[str, Path]:
    """A Stable Diffusion folder (SD 1.4's sizes, or a reduced one for CPUs) with a safety
    checker, an embedder for its text width, and for --fast an LCM-LoRA and a TAESD."""
    import torch
    from diffusers import (AutoencoderKL, AutoencoderTiny, PNDMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    from factories import make_paper_embedder, make_tiny_tokenizer
    from fast_factories import make_lcm_lora

    torch.manual_seed(0)
    tokenizer = make_tiny_tokenizer(folder / "_tokenizer")
    if full_size:  # diffusers' defaults are SD 1.x's UNet and VAE
        width = 768
        unet, vae = UNet2DConditionModel(), AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4)
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                              num_hidden_layers=12, num_attention_heads=12)
    else:
        width = 256
        unet = UNet2DConditionModel(
            block_out_channels=(64, 128, 256, 256), layers_per_block=1, cross_attention_dim=width,
            attention_head_dim=8, norm_num_groups=32)
        vae = AutoencoderKL(block_out_channels=(32, 64, 128, 128), layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4,
                            norm_num_groups=32)
        text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width,
                              intermediate_size=4 * width, num_hidden_layers=4,
                              num_attention_heads=4)
    text.bos_token_id, text.eos_token_id, text.pad_token_id = 0, 1, 1
    checker = StableDiffusionSafetyChecker(CLIPConfig(
        text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                     "num_attention_heads": 2},
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
        projection_dim=32))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=CLIPTextModel(text), tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=checker,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224))
    pipe.save_pretrained(folder / "sd")
    models = {"sd": folder / "sd",
              "embedder": make_paper_embedder(folder / "embedder.bin", input_dim=96,
                                              token_dim=width)}
    if with_fast:
        models["lcm_lora"] = make_lcm_lora(folder / "lcm" / "pytorch_lora_weights.safetensors",
                                           folder / "sd")
        # TAESD's architecture; on the CPU narrowed by the same factor as the VAE (4), so that
        # each side keeps its real share of the work.
        widths = (64,) * 4 if full_size else (16,) * 4
        AutoencoderTiny(encoder_block_out_channels=widths, decoder_block_out_channels=widths
                        ).save_pretrained(folder / "taesd")
        models["taesd"] = folder / "taesd"
    return models


def make_clips(folder: Path, count: int) -> list[Path]:
    from factories import tone, write_audio

    folder.mkdir(parents=True, exist_ok=True)
    return [write_audio(folder / f"clip{i:03d}.wav", tone(10.0, freq=180 + 23 * i, seed=i))
            for i in range(count)]


# ---------------------------------------------------------------------------------------------
# One measured run (in its own process)

class UNetTimer:
    """Seconds inside UNet2DConditionModel.forward, whichever pipeline calls it."""

    def __init__(self, cuda: bool):
        from diffusers import UNet2DConditionModel

        self.seconds, self.calls, self.cuda = 0.0, 0, cuda
        original = UNet2DConditionModel.forward
        timer = self

        def forward(module, *args, **kwargs):
            timer._sync()
            start = time.perf_counter()
            out = original(module, *args, **kwargs)
            timer._sync()
            timer.seconds += time.perf_counter() - start
            timer.calls += 1
            return out

        UNet2DConditionModel.forward = forward

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()


def run_paper_loop(config: dict, clips: list[Path], out: Path, on_image) -> None:
    """The paper's loop: a new pipeline per clip, batch 1, float32, the model's PNDM."""
    import torch
    from diffusers import StableDiffusionPipeline

    from audiotoken_cli.audio.decode import load_window
    from audiotoken_cli.config import Window
    from audiotoken_cli.pipeline.tokens import AudioTokenizer

    device = torch.device(config["device"])
    tokenizer = AudioTokenizer.load(Path(config["beats"]), Path(config["embedder"]), device,
                                    torch.float32)
    for i, clip in enumerate(clips):
        pipe = StableDiffusionPipeline.from_pretrained(config["sd"], dtype=torch.float32).to(device)
        pipe.set_progress_bar_config(disable=True)
        pipe.tokenizer.add_tokens("<*>")
        pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer))
        row = pipe.tokenizer.convert_tokens_to_ids("<*>")
        with torch.no_grad():
            token = tokenizer(load_window(clip, Window())[None].to(device))[0]
            pipe.text_encoder.get_input_embeddings().weight[row] = token
            image = pipe("a photo of <*>", num_inference_steps=config["steps"],
                         guidance_scale=7.5, height=config["size"], width=config["size"],
                         generator=torch.Generator("cpu").manual_seed(config["seed"] + i)).images[0]
        image.save(out / f"{clip.stem}_seed{config['seed']}.png")
        on_image()
        del pipe


def run_ours(config: dict, clips: list[Path], out: Path, on_image, fast: bool) -> None:
    from audiotoken_cli.config import GenerateSettings, RuntimeSettings
    from audiotoken_cli.pipeline.generate import GenerateEvents, generate_files

    sampling = dict(steps=config["steps"], guidance=7.5, scheduler=config["scheduler"])
    if fast:  # what `generate --fast` sets
        sampling = dict(steps=4, guidance=1.0, scheduler="lcm", lcm_lora=Path(config["lcm_lora"]),
                        taesd=Path(config["taesd"]))
    settings = GenerateSettings(
        sd=Path(config["sd"]), audio_encoder=Path(config["beats"]),
        embedder=Path(config["embedder"]), seed=config["seed"], width=config["size"],
        height=config["size"], batch_size=config["batch"], output_dir=out,
        compile=config.get("compile", False),
        runtime=RuntimeSettings(config["device"], config["dtype"]), **sampling)
    results = list(generate_files(clips, settings, GenerateEvents(on_image=lambda _p: on_image())))
    assert all(r.status == "written" for r in results), results


def worker(config: dict) -> dict:
    import torch

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    cuda = config["device"] == "cuda"
    timer = UNetTimer(cuda)
    clips = sorted(Path(config["clips"]).glob("*.wav"))[: config["count"]]
    out = Path(tempfile.mkdtemp(prefix="bench-out-"))
    marks: list[float] = []
    start = time.perf_counter()
    if config["mode"] == "paper":
        run_paper_loop(config, clips, out, lambda: marks.append(time.perf_counter()))
    else:
        run_ours(config, clips, out, lambda: marks.append(time.perf_counter()),
                 fast=config["mode"] == "fast")
    wall = time.perf_counter() - start
    images = len(list(out.glob("*.png")))
    result = {"mode": config["mode"], "clips": len(clips), "images": images, "wall_s": wall,
              "images_per_s": images / wall, "unet_s": timer.seconds, "unet_calls": timer.calls,
              "unet_share": timer.seconds / wall, "first_image_s": marks[0] - start,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              # After the first image: the rate once the models are loaded and warm.
              "steady_images_per_s": (len(marks) - 1) / (marks[-1] - marks[0])
              if len(marks) > 1 and marks[-1] > marks[0] else float("nan")}
    if cuda:
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["unet_tflop_per_call"] = unet_tflop(config)
    return result


def unet_tflop(config: dict) -> float:
    """FLOPs of one UNet call at the run's batch (2B with guidance), counted by torch."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    unet = UNet2DConditionModel.from_pretrained(Path(config["sd"]) / "unet", dtype=torch.float16)
    unet = unet.to("cuda")
    batch, side = 2 * config["batch"], config["size"] // 8
    sample = torch.randn(batch, 4, side, side, device="cuda", dtype=torch.float16)
    context = torch.randn(batch, 77, unet.config.cross_attention_dim, device="cuda",
                          dtype=torch.float16)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(sample, 500, encoder_hidden_states=context)
    return counter.get_total_flops() / 1e12


# ---------------------------------------------------------------------------------------------
# The side-by-side report

def measure(config: dict, **changes) -> dict:
    """Run one measurement in a fresh process and return its figures."""
    run = {**config, **changes}
    done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(run)],
                          capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        raise SystemExit(f"{run['mode']} run failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {result['mode']:<6} {result['clips']:>3} clips: {result['images']} images in "
          f"{result['wall_s']:.1f} s ({result['images_per_s']:.3f} images/s; "
          f"{result['steady_images_per_s']:.3f} after the first), UNet "
          f"{100 * result['unet_share']:.0f} % of wall time, first image at "
          f"{result['first_image_s']:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB"
          + (f", CUDA peak {result['cuda_peak_mb']:.0f} MB" if "cuda_peak_mb" in result else ""),
          flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--clips", type=int, default=12, help="clips in the comparison (12)")
    parser.add_argument("--steps", type=int, help="PNDM steps, both sides (CPU 10, GPU 50)")
    parser.add_argument("--size", type=int, help="image side in pixels (CPU 128, GPU 512)")
    parser.add_argument("--batch", type=int, help="our batch size (CPU 1, generate's own "
                        "choice there; GPU 8)")
    parser.add_argument("--beats", default=str(REPO / "tests" / "data" / "tiny_beats.pt"),
                        help="BEATs checkpoint (default: the tests' tiny one)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="the GPU's dense fp16 peak, for MFU (H100 SXM: 989)")
    parser.add_argument("--compile", action="store_true", help="our side with --compile")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 12 → 48 clips runs")
    parser.add_argument("--no-fast", action="store_true", help="skip --fast against the default")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available()
                                                        else "cpu")
    gpu = device == "cuda"
    folder = Path(tempfile.mkdtemp(prefix="bench-generate-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if gpu else "") + f"; load {os.getloadavg()}")
    models = build_models(folder / "models", full_size=gpu, with_fast=not args.no_fast)
    make_clips(folder / "clips", 48 if not args.no_scaling else args.clips)
    config = {"device": device, "dtype": "float16" if gpu else "float32", "seed": 1,
              "steps": args.steps or (50 if gpu else 10), "size": args.size or (512 if gpu else 128),
              "batch": args.batch or (8 if gpu else 1), "scheduler": "pndm", "threads": args.threads,
              "beats": args.beats, "clips": str(folder / "clips"), "count": args.clips,
              "compile": args.compile, **{k: str(v) for k, v in models.items()}}
    print(f"settings: PNDM {config['steps']} steps, guidance 7.5, {config['size']}×{config['size']}"
          f", safety checker on; ours: batch {config['batch']}, {config['dtype']}; "
          f"paper loop: batch 1, float32, a new pipeline per clip")

    print("\nthe paper's loop against audiotoken generate:")
    paper = measure(config, mode="paper", dtype="float32")
    ours = measure(config, mode="ours")
    print(f"  → audiotoken is {ours['images_per_s'] / paper['images_per_s']:.2f}× the paper's "
          f"loop in images/s; time to first image ×"
          f"{ours['first_image_s'] / paper['first_image_s']:.2f}")
    if gpu:
        achieved = ours["unet_tflop_per_call"] * ours["unet_calls"] / ours["unet_s"]
        print(f"  UNet model-FLOP utilisation: {achieved:.0f} TFLOP/s of {args.peak_tflops:.0f} "
              f"= {100 * achieved / args.peak_tflops:.1f} %")

    if not args.no_scaling:
        print("\naudiotoken generate, 12 clips against 48:")
        small = measure(config, mode="ours", count=12)
        large = measure(config, mode="ours", count=48)
        print(f"  → peak RSS ×{large['peak_rss_mb'] / small['peak_rss_mb']:.3f}, time to first "
              f"image ×{large['first_image_s'] / small['first_image_s']:.2f} (4× the files)")

    if not args.no_fast:
        print("\n--fast against the default (dpm++ 25 steps, guidance 7.5, full VAE):")
        default = measure(config, mode="ours", scheduler="dpm++", steps=25)
        fast = measure(config, mode="fast")
        print(f"  → --fast is {fast['images_per_s'] / default['images_per_s']:.2f}× the default "
              f"in images/s, loading included; "
              f"{fast['steady_images_per_s'] / default['steady_images_per_s']:.2f}× after the "
              "first image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
