"""`audiotoken video` with tiny random models on synthetic audio whose sound changes every 2 s."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from factories import make_paper_embedder, make_tiny_sd, tone, write_audio, write_video
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from audiotoken_cli.cli import app
from audiotoken_cli.config import GenerateSettings, RuntimeSettings
from audiotoken_cli.video import VideoEvents, VideoSettings, video_files
from audiotoken_cli.video.storyboard import LABEL_HEIGHT, grid_shape

DATA = Path(__file__).parent / "data"
TINY_BEATS = DATA / "tiny_beats.pt"
FPS, HOP, WINDOW, SEED, SIZE = 4, 2, 4, 11, 32
runner = CliRunner()


def strong_tiny_sd(folder: Path) -> Path:
    """The tiny random SD with its cross-attention keys and values scaled up: as built, its
    random cross-attention barely reaches the pixels (keyframes of different sounds differ by
    0.2/255), too little to tell a smooth in-between from a frozen one."""
    from diffusers import UNet2DConditionModel

    make_tiny_sd(folder, text_width=32)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    with torch.no_grad():
        for name, module in unet.named_modules():
            if name.endswith(("attn2.to_k", "attn2.to_v")):
                module.weight.mul_(24)
    unet.save_pretrained(folder / "unet")
    return folder


def four_tones(seconds_each: float = 2.0) -> np.ndarray:
    """Four distinct parts: a different pitch every ``seconds_each`` seconds, (1, S)."""
    parts = [tone(seconds_each, freq=freq, seed=i) for i, freq in enumerate((200, 600, 1500, 3200))]
    return np.concatenate(parts, axis=1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"sd": strong_tiny_sd(folder / "sd"),
            "embedder": make_paper_embedder(folder / "emb.bin", input_dim=96, token_dim=32, seed=5)}


def model_args(models) -> list[str]:
    return ["--sd", str(models["sd"]), "--audio-encoder", str(TINY_BEATS),
            "--embedder", str(models["embedder"]), "--device", "cpu", "--dtype", "float32"]


def render_args() -> list[str]:
    return ["--scheduler", "pndm", "--steps", "2", "-W", str(SIZE), "-H", str(SIZE)]


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def video_cli(models, *args):
    return invoke("video", *args, *model_args(models), *render_args(), "--hop", HOP,
                  "--window", WINDOW, "--fps", FPS, "--seed", SEED, "--batch-size", 4)


@pytest.fixture(scope="module")
def song(models, tmp_path_factory) -> dict:
    """One full run with keyframes and storyboard, shared by the checks below."""
    folder = tmp_path_factory.mktemp("song")
    source = write_audio(folder / "song.wav", four_tones())
    result = video_cli(models, source, "--save-keyframes", "--storyboard")
    assert result.exit_code == 0, result.output
    name = folder / "song.audiotoken"
    return {"source": source, "folder": folder, "mp4": name.with_suffix(".audiotoken.mp4"),
            "sidecar": json.loads(name.with_suffix(".audiotoken.json").read_text()),
            "tokens": load_file(str(name.with_suffix(".audiotoken.tokens.safetensors")))["tokens"],
            "keyframes": folder / "song.audiotoken.keyframes",
            "storyboard": folder / "song.audiotoken.storyboard.png"}


def decoded_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(video=0)]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_the_mp4_has_one_video_and_one_audio_stream_as_long_as_the_audio(song):
    with av.open(str(song["mp4"])) as container:
        video, audio = container.streams.video, container.streams.audio
        assert len(video) == 1 and len(audio) == 1 and len(container.streams) == 2
        assert video[0].codec_context.name == "h264" and video[0].format.name == "yuv420p"
        assert audio[0].codec_context.name == "aac"
        frames = sum(1 for _ in container.decode(video=0))
        video_seconds = float(video[0].duration * video[0].time_base)
        audio_seconds = float(audio[0].duration * audio[0].time_base)
    assert abs(frames - FPS * 8.0) <= 1
    assert abs(video_seconds - 8.0) <= 1 / FPS and abs(audio_seconds - 8.0) <= 1 / FPS


def test_sidecar_lists_each_keyframe_window_and_seed(song):
    keys = song["sidecar"]["keyframes"]
    assert [k["time"] for k in keys] == [0.0, 2.0, 4.0, 6.0, 8.0]
    # Windows are centred on their moment and kept inside the 8 s file.
    assert [k["start"] for k in keys] == [0.0, 0.0, 2.0, 4.0, 4.0]
    assert all(k["duration"] == WINDOW and k["seed"] == SEED for k in keys)
    assert [k["index"] for k in keys] == list(range(5))
    settings = song["sidecar"]["settings"]
    assert settings["hop"] == HOP and settings["fps"] == FPS and settings["steps"] == 2
    assert settings["audio_file"] == "song.wav" and len(settings["audio_sha256"]) == 64
    assert song["tokens"].shape == (5, 32) and song["tokens"].dtype == torch.float32
    assert not (song["folder"] / ".song.audiotoken.work").exists()  # removed once complete


@pytest.mark.parametrize("index", [2, 3])
def test_keyframe_token_equals_embed_of_its_window(song, models, tmp_path, index):
    key = song["sidecar"]["keyframes"][index]
    result = invoke("embed", song["source"], "-o", tmp_path, "--start", key["start"],
                    "--duration", key["duration"], "--audio-encoder", TINY_BEATS,
                    "--embedder", models["embedder"], "--device", "cpu", "--dtype", "float32")
    assert result.exit_code == 0, result.output
    embedded = load_file(str(tmp_path / "song.safetensors"))["emb_params"][0]
    ours = song["tokens"][index]
    assert (ours - embedded).norm() <= 1e-4 * embedded.norm()
    assert not torch.allclose(song["tokens"][1], song["tokens"][2])  # the sound did change


@pytest.mark.parametrize("index", [1, 3])
def test_keyframe_image_equals_generate_for_its_window_and_seed(song, models, tmp_path, index):
    key = song["sidecar"]["keyframes"][index]
    result = invoke("generate", song["source"], "-o", tmp_path, "--start", key["start"],
                    "--duration", key["duration"], "--seed", key["seed"], *model_args(models),
                    *render_args())
    assert result.exit_code == 0, result.output
    generated = tmp_path / f"song_seed{key['seed']}.png"
    keyframe = song["keyframes"] / f"keyframe_{index:04d}.png"
    assert np.abs(pixels(keyframe) - pixels(generated)).max() <= 1.5
    # The same settings chunk as generate writes for that window and seed.
    assert json.loads(Image.open(keyframe).text["audiotoken"]) == json.loads(
        Image.open(generated).text["audiotoken"])


def test_in_between_frames_move_smoothly_from_keyframe_to_keyframe(song):
    frames = decoded_frames(song["mp4"])
    first, last = 2 * FPS, 4 * FPS  # the frames at t = 2 s and 4 s: keyframes 1 and 2
    across = np.abs(frames[last] - frames[first]).mean()
    steps = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(first, last)]
    assert across > 2.0  # the two keyframes differ visibly
    # No step is a jump (a cut would put the whole difference into one step): each is a small
    # part of the way, and no step is much bigger than a typical one.
    assert max(steps) < 0.45 * across
    assert max(steps) < 2.5 * float(np.median(steps))
    # Frames on keyframe times are the keyframes, up to the codec (4:2:0 chroma and crf 18 cost
    # a few levels on these noise-like tiny-model pictures): the nearest frame of the interval.
    for index, frame in ((1, first), (2, last)):
        keyframe = through_yuv420p(pixels(song["keyframes"] / f"keyframe_{index:04d}.png"))
        distances = [np.abs(frames[i] - keyframe).mean() for i in range(first, last + 1)]
        assert int(np.argmin(distances)) == frame - first
        assert distances[frame - first] < 0.4 * across


def through_yuv420p(image: np.ndarray) -> np.ndarray:
    frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
    return frame.reformat(format="yuv420p").to_ndarray(format="rgb24").astype(np.float32)


def test_storyboard_has_one_labelled_tile_per_keyframe(song):
    sheet = pixels(song["storyboard"])
    columns, rows = grid_shape(5)
    tile_w, tile_h = sheet.shape[1] // columns, sheet.shape[0] // rows - LABEL_HEIGHT
    assert (columns * tile_w, rows * (tile_h + LABEL_HEIGHT)) == (sheet.shape[1], sheet.shape[0])
    filled = 0
    for cell in range(columns * rows):
        x, y = (cell % columns) * tile_w, (cell // columns) * (tile_h + LABEL_HEIGHT)
        tile = sheet[y:y + tile_h, x:x + tile_w]
        label = sheet[y + tile_h:y + tile_h + LABEL_HEIGHT, x:x + tile_w]
        if not np.all(tile == 255):
            filled += 1
            assert np.any(label < 128)  # a time is written under it
    assert filled == 5


def test_storyboard_alone_with_no_video(models, tmp_path):
    source = write_audio(tmp_path / "loop.wav", four_tones(1.0))
    result = video_cli(models, source, "--storyboard", "--no-video", "--keyframes-only")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "loop.audiotoken.storyboard.png").is_file()
    assert not (tmp_path / "loop.audiotoken.mp4").exists()
    assert load_file(str(tmp_path / "loop.audiotoken.tokens.safetensors"))["tokens"].shape == (3, 32)


def test_an_input_video_is_never_overwritten(models, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", four_tones(1.0), seconds=4.0)
    before = clip.read_bytes()
    result = video_cli(models, clip, "--keyframes-only")
    assert result.exit_code == 0, result.output
    assert clip.read_bytes() == before
    assert (tmp_path / "clip.audiotoken.mp4").is_file()
    # Given both, the first one's output would be the second input: that one is refused.
    made = tmp_path / "clip.audiotoken.mp4"
    made_bytes = made.read_bytes()
    result = video_cli(models, clip, made, "--keyframes-only", "--overwrite")
    assert result.exit_code == 1
    assert "would overwrite the input" in result.output
    assert made.read_bytes() == made_bytes and clip.read_bytes() == before
    # Our own video, found again (e.g. in a folder given as input), is skipped, not re-made.
    skipped = list(video_files([made], library_settings(models, None)))
    assert [(r.status, "a video this command made" in r.message) for r in skipped] == [
        ("skipped", True)]
    assert not (tmp_path / "clip.audiotoken.audiotoken.mp4").exists()


def test_keyframes_only_cross_fades_in_pixels(song, models, tmp_path):
    source = write_audio(tmp_path / "song.wav", four_tones())
    result = video_cli(models, source, "--keyframes-only")
    assert result.exit_code == 0, result.output
    frames = decoded_frames(tmp_path / "song.audiotoken.mp4")
    a = pixels(song["keyframes"] / "keyframe_0001.png")
    b = pixels(song["keyframes"] / "keyframe_0002.png")
    middle = frames[2 * FPS + FPS]  # t = 3 s, halfway from keyframe 1 to 2
    blend = through_yuv420p(np.rint((a + b) / 2))
    off = {name: np.abs(middle - reference).mean() for name, reference in
           (("blend", blend), ("a", through_yuv420p(a)), ("b", through_yuv420p(b)))}
    assert off["blend"] < 0.5 * min(off["a"], off["b"]), off


class Interrupt(KeyboardInterrupt):
    pass


def library_settings(models, output_dir: Path) -> VideoSettings:
    generate = GenerateSettings(sd=models["sd"], audio_encoder=TINY_BEATS,
                                embedder=models["embedder"], seed=SEED, steps=2,
                                width=SIZE, height=SIZE, scheduler="pndm", batch_size=4,
                                output_dir=output_dir,
                                runtime=RuntimeSettings(device="cpu", dtype="float32"))
    return VideoSettings(generate, hop=HOP, window=WINDOW, fps=FPS)


def steps_per_batch(models) -> int:
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler.from_pretrained(models["sd"] / "scheduler")
    scheduler.set_timesteps(2)
    return len(scheduler.timesteps)


def test_an_interrupted_video_resumes_and_equals_an_uninterrupted_one(song, models, tmp_path):
    source = write_audio(tmp_path / "song.wav", four_tones())
    settings = library_settings(models, tmp_path / "out")
    written = {"frames": 0, "steps": 0}

    def stop_after_twelve_frames():
        written["frames"] += 1
        if written["frames"] == 12:
            raise Interrupt

    with pytest.raises(Interrupt):
        list(video_files([source], settings, VideoEvents(on_frame=stop_after_twelve_frames)))
    work = tmp_path / "out" / ".song.audiotoken.work"
    assert sorted(p.name for p in work.glob("frames_*.npz")) == ["frames_000000.npz",
                                                                  "frames_000001.npz"]
    assert not (tmp_path / "out" / "song.audiotoken.mp4").exists()
    assert not list((tmp_path / "out").glob("*.partial"))

    def count_step():
        written["steps"] += 1

    results = list(video_files([source], settings, VideoEvents(on_step=count_step)))
    assert [r.status for r in results] == ["written"]
    # Only the two unfinished intervals were rendered again: 2 × 7 frames, in batches of 4.
    assert written["steps"] == 2 * 2 * steps_per_batch(models)
    assert not work.exists()
    resumed = decoded_frames(tmp_path / "out" / "song.audiotoken.mp4")
    uninterrupted = decoded_frames(song["mp4"])
    assert len(resumed) == len(uninterrupted)
    assert max(np.abs(a - b).max() for a, b in zip(resumed, uninterrupted)) == 0


def test_changed_settings_start_the_work_folder_afresh(models, tmp_path):
    from audiotoken_cli.video.workfolder import WorkFolder

    folder = tmp_path / ".x.work"
    work = WorkFolder(folder, {"seed": 1})
    work.save_token(0, torch.ones(4))
    assert WorkFolder(folder, {"seed": 1}).token(0) is not None
    assert WorkFolder(folder, {"seed": 2}).token(0) is None


def test_settings_that_cannot_work_are_refused(models, tmp_path):
    source = write_audio(tmp_path / "a.wav", four_tones(1.0))
    result = video_cli(models, source, "--no-video")
    assert result.exit_code != 0 and "--storyboard" in result.output
    with pytest.raises(Exception, match="--fps"):
        list(video_files([source], replace(library_settings(models, tmp_path), fps=0)))


def test_audio_reactive_video_is_made_and_recorded(models, tmp_path):
    source = write_audio(tmp_path / "beat.wav", four_tones(1.0))
    result = video_cli(models, source, "--audio-reactive", "--keyframes-only")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "beat.audiotoken.json").read_text())["settings"]["audio_reactive"]
    assert len(decoded_frames(tmp_path / "beat.audiotoken.mp4")) == 4 * FPS


def test_a_bad_input_fails_alone_with_one_line(models, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    good = write_audio(tmp_path / "good.wav", four_tones(1.0))
    result = video_cli(models, broken, good, "--storyboard", "--no-video", "--keyframes-only")
    assert result.exit_code == 1
    assert "broken.wav: not an audio or video file FFmpeg can read" in result.output
    assert (tmp_path / "good.audiotoken.storyboard.png").is_file()
    assert not list(tmp_path.glob("broken.audiotoken*")) and not list(tmp_path.glob("*.partial"))
