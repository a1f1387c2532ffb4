"""`audiotoken generate` on a tiny random Stable Diffusion, BEATs and embedder built in the test."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.config import Window
from audiotoken_cli.errors import ModelError
from audiotoken_cli.files import write_atomically
from audiotoken_cli.models.lora import apply_paper_lora
from audiotoken_cli.render.prompt import PromptEncoder
from audiotoken_cli.pipeline.tokens import AudioTokenizer
from audiotoken_cli.audio.decode import load_window
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
runner = CliRunner()


@pytest.fixture
def clips(tmp_path) -> list[Path]:
    return [write_audio(tmp_path / "a.wav", tone(3.0, freq=250, seed=1)),
            write_audio(tmp_path / "b.wav", tone(11.0, freq=1200, seed=2))]


def generate(models, *args, sd=None, embedder=None):
    # The test's own arguments come last, so they override these defaults.
    argv = ["generate", "--sd", str(sd or models["sd"]),
            "--audio-encoder", str(TINY_BEATS), "--embedder", str(embedder or models["embedder"]),
            "--scheduler", "pndm", "--steps", "4", "-W", "64", "-H", "64", "--device", "cpu",
            "--dtype", "float32", *map(str, args)]
    return runner.invoke(app, argv)


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_images_land_beside_each_sound_with_their_settings(models, clips):
    result = generate(models, *clips, "-n", "2", "--seed", "7", "-g", "7.5")
    assert result.exit_code == 0, result.output
    for clip in clips:
        for seed in (7, 8):
            path = clip.parent / f"{clip.stem}_seed{seed}.png"
            image = Image.open(path)
            assert image.size == (64, 64) and image.mode == "RGB"
            parameters = image.text["parameters"]
            assert parameters.splitlines()[0] == "a photo of <*>"
            for part in (f"Seed: {seed}", "Steps: 4", "Sampler: PNDM", "CFG scale: 7.5",
                         "Size: 64x64", f"Audio: {clip.name}", "Model: sd"):
                assert part in parameters
            info = json.loads(image.text["audiotoken"])
            assert info["seed"] == seed and info["steps"] == 4 and info["scheduler"] == "pndm"
            assert info["audio_file"] == clip.name
            assert info["audio_sha256"] == hashlib.sha256(clip.read_bytes()).hexdigest()
            assert info["window"] == {"start": 0.0, "duration": 10.0}
            assert info["embedder_sha256"] == hashlib.sha256(
                models["embedder"].read_bytes()).hexdigest()
            assert len(info["sd_unet_sha256"]) == 64 and info["version"]
    assert "4 images of 2 sounds written" in result.output


def test_pixels_equal_the_papers_token_row_method(models, clips):
    """The paper writes the token into a new embedding row and runs the stock pipeline."""
    from diffusers import StableDiffusionPipeline

    generate(models, clips[0], "--seed", "7")
    ours = pixels(clips[0].parent / "a_seed7.png")

    tokenizer = AudioTokenizer.load(TINY_BEATS, models["embedder"], torch.device("cpu"),
                                    torch.float32)
    token = tokenizer(load_window(clips[0], Window())[None])[0]
    pipe = StableDiffusionPipeline.from_pretrained(models["sd"], dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.tokenizer.add_tokens("<*>")
    pipe.text_encoder.resize_token_embeddings(len(pipe.tokenizer))
    row = pipe.tokenizer.convert_tokens_to_ids("<*>")
    pipe.text_encoder.get_input_embeddings().weight.data[row] = token
    reference = pipe("a photo of <*>", num_inference_steps=4, guidance_scale=7.5, height=64,
                     width=64, generator=torch.Generator().manual_seed(7)).images[0]
    difference = np.abs(ours - np.asarray(reference, dtype=np.int16))
    assert difference.mean() <= 1.5 and difference.max() <= 1


def test_prompt_embeddings_equal_the_token_row_method(models):
    from transformers import CLIPTextModel, CLIPTokenizer

    def fresh():
        return (CLIPTokenizer.from_pretrained(models["sd"] / "tokenizer"),
                CLIPTextModel.from_pretrained(models["sd"] / "text_encoder"))

    tokens = torch.randn(3, 32)
    prompts = ["a photo of <*>", "<*> sketch", "a blurry <*> of the dog"]
    encoder = PromptEncoder(*fresh())
    ours = encoder.encode(prompts, tokens)
    tokenizer, text_encoder = fresh()
    tokenizer.add_tokens("<*>")
    text_encoder.resize_token_embeddings(len(tokenizer))
    for i, prompt in enumerate(prompts):
        text_encoder.get_input_embeddings().weight.data[-1] = tokens[i]
        ids = tokenizer([prompt], padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            assert torch.equal(ours[i], text_encoder(ids)[0][0])


def test_an_image_does_not_depend_on_its_batch(models, clips, tmp_path):
    together = generate(models, *clips, "-n", "4", "--seed", "3", "--batch-size", "8",
                        "-o", tmp_path / "batch")
    alone = generate(models, clips[1], "-n", "1", "--seed", "5", "--batch-size", "1",
                     "-o", tmp_path / "alone")
    assert together.exit_code == 0 and alone.exit_code == 0, together.output + alone.output
    assert np.array_equal(pixels(tmp_path / "batch" / "b_seed5.png"),
                          pixels(tmp_path / "alone" / "b_seed5.png"))
    # Different seeds and different sounds really do give different images.
    assert not np.array_equal(pixels(tmp_path / "batch" / "b_seed5.png"),
                              pixels(tmp_path / "batch" / "b_seed6.png"))
    assert not np.array_equal(pixels(tmp_path / "batch" / "a_seed5.png"),
                              pixels(tmp_path / "batch" / "b_seed5.png"))


def test_a_file_that_is_not_ours_is_kept_and_the_image_goes_beside_it(models, clips):
    target = clips[0].parent / "a_seed1.png"
    target.write_bytes(b"mine")
    result = generate(models, clips[0], "-n", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"mine"
    tagged = list(clips[0].parent.glob("a_seed1_*.png"))
    assert len(tagged) == 1 and len(tagged[0].stem.split("_")[-1]) == 8
    assert (clips[0].parent / "a_seed2.png").exists()
    again = generate(models, clips[0], "-n", "2", "--seed", "1")
    assert "1 sound skipped" in again.output and "made with these settings" in again.output
    generate(models, clips[0], "-n", "2", "--seed", "1", "--overwrite")
    assert Image.open(target).size == (64, 64)


def test_a_changed_setting_writes_new_images_and_keeps_the_old(models, clips):
    folder = clips[0].parent
    first = generate(models, clips[0], "-n", "2", "--seed", "7")
    assert first.exit_code == 0, first.output
    old = {p.name: p.read_bytes() for p in folder.glob("a_seed*.png")}
    assert sorted(old) == ["a_seed7.png", "a_seed8.png"]
    changed = generate(models, clips[0], "-n", "2", "--seed", "7", "--prompt",
                       "an oil painting of <*>")
    assert changed.exit_code == 0, changed.output
    assert "2 images of 1 sound written" in changed.output
    new = sorted(set(p.name for p in folder.glob("a_seed*.png")) - set(old))
    assert len(new) == 2 and all(name.startswith(("a_seed7_", "a_seed8_")) for name in new)
    assert {p: (folder / p).read_bytes() for p in old} == old  # the first images are untouched
    tags = {name.rsplit("_", 1)[1] for name in new}
    assert len(tags) == 1  # one settings tag for the whole run
    assert json.loads(Image.open(folder / new[0]).text["audiotoken"])["prompt"] == (
        "an oil painting of <*>")
    # The same new settings again find their images; the old settings find theirs.
    for argv in (("--prompt", "an oil painting of <*>"), ()):
        again = generate(models, clips[0], "-n", "2", "--seed", "7", *argv)
        assert again.exit_code == 0 and "1 sound skipped" in again.output, again.output
    assert len(list(folder.glob("a_seed*.png"))) == 4
    # Another scheduler is another setting, too.
    other = generate(models, clips[0], "-n", "1", "--seed", "7", "--scheduler", "ddim")
    assert "1 image of 1 sound written" in other.output
    assert len(list(folder.glob("a_seed7*.png"))) == 3


def test_a_random_seed_is_printed_and_used(models, clips):
    result = generate(models, clips[0])
    assert result.exit_code == 0, result.output
    seed = int(result.output.split("seed ")[1].split()[0])
    assert (clips[0].parent / f"a_seed{seed}.png").exists()


def test_a_bad_file_among_good_ones(models, clips, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_text("not audio")
    result = generate(models, clips[0], bad, clips[1], "--seed", "1")
    assert result.exit_code == 1
    assert f"error: {bad}: not an audio or video file" in result.output
    assert (clips[0].parent / "a_seed1.png").exists() and (clips[1].parent / "b_seed1.png").exists()
    assert not list(tmp_path.glob("broken*.png"))


@pytest.mark.parametrize("prompt", ["a photo of a dog", "<*> and <*>"])
def test_the_prompt_needs_exactly_one_placeholder(models, clips, prompt):
    result = generate(models, clips[0], "--prompt", prompt)
    assert result.exit_code == 2
    assert "exactly once" in result.output


def test_embedder_width_must_match_the_text_encoder(models, clips, tmp_path):
    wide = make_paper_embedder(tmp_path / "wide.bin", input_dim=96, token_dim=48)
    result = generate(models, clips[0], embedder=wide)
    assert result.exit_code == 1
    assert "48-wide tokens" in result.output and "is 32 wide" in result.output
    assert not list(clips[0].parent.glob("*.png"))


def test_a_wider_text_encoder_like_sd2(models, clips, tmp_path):
    sd2 = make_tiny_sd(tmp_path / "sd2", text_width=48)
    embedder = make_paper_embedder(tmp_path / "e48.bin", input_dim=96, token_dim=48)
    result = generate(models, clips[0], "--seed", "2", sd=sd2, embedder=embedder)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("scheduler", ["dpm++", "ddim", "euler", "euler-a"])
def test_every_scheduler_renders(models, clips, scheduler):
    argv = ["generate", str(clips[0]), "--sd", str(models["sd"]), "--audio-encoder",
            str(TINY_BEATS), "--embedder", str(models["embedder"]), "--scheduler", scheduler,
            "--steps", "3", "-W", "64", "-H", "64", "--device", "cpu", "--seed", "4"]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert scheduler == json.loads(Image.open(clips[0].parent / "a_seed4.png").text[
        "audiotoken"])["scheduler"]


def test_sizes_must_fit_the_vae(models, clips):
    # Checked before any model loads, by the rule of real SD (a VAE that downsamples by 8).
    result = generate(models, clips[0], "-W", "61")
    assert result.exit_code == 2 and "--width 61 must be a multiple of 8" in result.output


def test_negative_prompt_changes_the_image_and_is_recorded(models, clips, tmp_path):
    generate(models, clips[0], "--seed", "1", "-o", tmp_path / "plain")
    generate(models, clips[0], "--seed", "1", "-o", tmp_path / "neg", "--negative-prompt",
             "blurry sketch")
    image = Image.open(tmp_path / "neg" / "a_seed1.png")
    assert "Negative prompt: blurry sketch" in image.text["parameters"]
    assert not np.array_equal(pixels(tmp_path / "plain" / "a_seed1.png"),
                              pixels(tmp_path / "neg" / "a_seed1.png"))


def test_interrupted_write_leaves_nothing(tmp_path):
    def half_then_interrupt(temporary: Path) -> None:
        temporary.write_bytes(b"half an image")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "x.png", half_then_interrupt)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The paper's optional UNet LoRA, in the old attention-processor format.


def make_paper_lora(unet, path: Path, rank: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """What `torch.save(AttnProcsLayers(LoRAAttnProcessor...).state_dict())` wrote."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name in unet.attn_processors:  # e.g. down_blocks.0.attentions.0....attn1.processor
        block = unet.get_submodule(name.removesuffix(".processor"))
        for short, linear in (("q", block.to_q), ("k", block.to_k), ("v", block.to_v),
                              ("out", block.to_out[0])):
            state[f"{name}.to_{short}_lora.down.weight"] = torch.randn(
                rank, linear.in_features, generator=generator) * 0.1
            state[f"{name}.to_{short}_lora.up.weight"] = torch.randn(
                linear.out_features, rank, generator=generator) * 0.1
    torch.save(state, path)
    return state


def test_lora_is_folded_into_the_attention_projections(models, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models["sd"] / "unet")
    before = {n: m.weight.clone() for n, m in unet.named_modules() if isinstance(m, torch.nn.Linear)}
    state = make_paper_lora(unet, tmp_path / "lora.bin")
    assert apply_paper_lora(unet, tmp_path / "lora.bin") == len(state) // 2
    name = next(iter(unet.attn_processors)).removesuffix(".processor")
    x = torch.randn(5, before[f"{name}.to_q"].shape[1])
    down = state[f"{name}.processor.to_q_lora.down.weight"]
    up = state[f"{name}.processor.to_q_lora.up.weight"]
    # The old LoRAAttnProcessor computed to_q(x) + up(down(x)).
    expected = x @ before[f"{name}.to_q"].T + (x @ down.T) @ up.T  # SD's to_q has no bias
    torch.testing.assert_close(unet.get_submodule(f"{name}.to_q")(x), expected)
    untouched = [n for n in before if "attn" not in n]
    assert all(torch.equal(unet.get_submodule(n).weight, before[n]) for n in untouched)


def test_generate_with_lora(models, clips, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models["sd"] / "unet")
    make_paper_lora(unet, tmp_path / "lora.bin", seed=1)
    generate(models, clips[0], "--seed", "1", "-o", tmp_path / "plain")
    result = generate(models, clips[0], "--seed", "1", "-o", tmp_path / "lora", "--lora",
                      tmp_path / "lora.bin")
    assert result.exit_code == 0, result.output
    info = json.loads(Image.open(tmp_path / "lora" / "a_seed1.png").text["audiotoken"])
    assert info["lora"].endswith("lora.bin") and len(info["lora_sha256"]) == 64
    assert not np.array_equal(pixels(tmp_path / "plain" / "a_seed1.png"),
                              pixels(tmp_path / "lora" / "a_seed1.png"))


def test_lora_for_another_model_is_refused(models, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(models["sd"] / "unet")
    torch.save({"mid_block.attentions.9.transformer_blocks.0.attn1.processor.to_q_lora.down.weight":
                torch.zeros(2, 32),
                "mid_block.attentions.9.transformer_blocks.0.attn1.processor.to_q_lora.up.weight":
                torch.zeros(32, 2)}, tmp_path / "other.bin")
    with pytest.raises(ModelError, match="has no attention projection"):
        apply_paper_lora(unet, tmp_path / "other.bin")
    torch.save({"unet.weird": torch.zeros(1)}, tmp_path / "weird.bin")
    with pytest.raises(ModelError, match="not the paper's LoRA format"):
        apply_paper_lora(unet, tmp_path / "weird.bin")



def test_ctrl_c_stops_cleanly_and_leaves_only_complete_images(models, clips, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    argv = [sys.executable, "-m", "audiotoken_cli", "generate", str(clips[0]), "-n", "20",
            "--seed", "0", "--batch-size", "1", "--steps", "30", "-W", "64", "-H", "64",
            "--sd", str(models["sd"]), "--audio-encoder", str(TINY_BEATS),
            "--embedder", str(models["embedder"]), "--device", "cpu", "-o", str(out)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(out.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    images = list(out.glob("*.png"))
    assert 1 <= len(images) < 20
    for image in images:
        Image.open(image).verify()  # complete, valid PNGs only
    assert [p.name for p in out.iterdir() if not p.name.endswith(".png")] == []
