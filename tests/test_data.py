"""Training data: finding files, labels, skipped files, windows and frames, sizes, determinism."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from audiotoken_cli.audio.decode import load_window
from audiotoken_cli.config import Window
from audiotoken_cli.training.data import (
    DataSettings,
    TrainingData,
    collate,
    parse_size,
    read_labels,
    scan,
)
from audiotoken_cli.errors import InputError, UsageError
from factories import tone, write_audio
from media_factories import (
    BLUE,
    BLUE_HZ,
    RED,
    RED_HZ,
    ramp_color,
    ramp_level,
    write_clip,
    write_image,
)

RATE = 16000
FPS = 10


def level(pixels: torch.Tensor) -> np.ndarray:
    """Mean RGB of (3, H, W) pixels in [-1, 1], back on the 0–255 scale."""
    return ((pixels.mean(dim=(1, 2)) + 1) * 127.5).numpy()


def peak_hz(waveform: torch.Tensor) -> float:
    spectrum = np.abs(np.fft.rfft(waveform.numpy()))
    return float(np.argmax(spectrum)) * RATE / waveform.numel()


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> Path:
    """Two classes that differ in picture and sound: red + 300 Hz, blue + 2 kHz; nested folders,
    several containers, and an audio+image pair."""
    root = tmp_path_factory.mktemp("classes")
    (root / "red" / "deep").mkdir(parents=True)
    (root / "blue").mkdir()
    write_clip(root / "red" / "r1.mp4", 3.0, RED, tone(3.0, freq=RED_HZ))
    write_clip(root / "red" / "deep" / "r2.mkv", 3.0, RED, tone(3.0, freq=RED_HZ))
    write_clip(root / "blue" / "b1.webm", 3.0, BLUE, tone(3.0, freq=BLUE_HZ))
    write_audio(root / "blue" / "b2.wav", tone(3.0, freq=BLUE_HZ))
    write_image(root / "blue" / "b2.png", color=BLUE)
    write_image(root / "blue" / "cover.jpg", color=BLUE)  # an image alone is not a sample
    (root / "notes.txt").write_text("not media")
    return root


@pytest.fixture(scope="module")
def ramp(tmp_path_factory) -> Path:
    """One 12 s video whose grey level encodes time (``ramp_level``), with a 300 Hz tone."""
    root = tmp_path_factory.mktemp("ramp")
    write_clip(root / "ramp.mp4", 12.0, ramp_color, fps=FPS)
    return root


def dataset(root: Path, seed: int = 0, **settings) -> TrainingData:
    config = DataSettings(root=root, **settings)
    samples, _ = scan(config)
    return TrainingData(samples, config, seed)


# --- scanning and labels --------------------------------------------------------------------

def test_scan_finds_videos_recursively_and_audio_image_pairs(classes):
    samples, warnings = scan(DataSettings(classes))
    assert warnings == []
    relative = [s.audio.relative_to(classes).as_posix() for s in samples]
    assert relative == ["blue/b1.webm", "blue/b2.wav", "red/deep/r2.mkv", "red/r1.mp4"]
    by_name = {s.audio.name: s for s in samples}
    assert by_name["b2.wav"].image == classes / "blue" / "b2.png"
    assert all(by_name[name].image is None for name in ("b1.webm", "r1.mp4", "r2.mkv"))
    assert all(abs(s.duration - 3.0) < 0.1 for s in samples)


def test_labels_come_from_the_first_subfolder(classes, tmp_path):
    samples, _ = scan(DataSettings(classes))
    assert {s.audio.name: s.label for s in samples} == {
        "b1.webm": "blue", "b2.wav": "blue", "r2.mkv": "red", "r1.mp4": "red"}
    loose = Path(shutil.copy(classes / "red" / "r1.mp4", tmp_path / "loose.mp4"))
    [sample], _ = scan(DataSettings(tmp_path))
    assert (sample.audio, sample.image, sample.label) == (loose, None, None)


def test_file_label_csv_by_relative_path_or_stem(classes, tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text('file,label\nred/r1.mp4,fire truck\n./red\\deep\\r2.mkv,siren\n'
                        'b2,"playing steel guitar, slide guitar"\n')
    samples, _ = scan(DataSettings(classes, labels=csv_path))
    assert {s.audio.name: s.label for s in samples} == {
        "r1.mp4": "fire truck", "r2.mkv": "siren",
        "b2.wav": "playing steel guitar, slide guitar", "b1.webm": None}
    for text in ("r1,dog\nb1.webm,cat\n", "label,notes,path\ndog,,r1\ncat,x,blue/b1.webm\n"):
        csv_path.write_text(text)  # no header; a header in another order with an extra column
        labels = {s.audio.name: s.label for s in scan(DataSettings(classes, labels=csv_path))[0]}
        assert labels["r1.mp4"] == "dog" and labels["b1.webm"] == "cat"


@pytest.mark.parametrize("header", ["", "ytid,start,label,split\n", "YTID,start,class,set\n"])
def test_vggsound_csv_matches_the_papers_file_names(tmp_path, header):
    data = tmp_path / "data"
    data.mkdir()
    write_clip(data / "-_gaZzFfzDQ_517000_527000.mp4", 1.0)
    write_clip(data / "-_gaZzFfzDQ_30000_40000.mp4", 1.0)
    write_clip(data / "a_B-c_d-E_f.mp4", 1.0)  # named by its ytid alone
    write_clip(data / "x9x9x9x9x9x_000012.mkv", 1.0)  # another common download layout
    labels = tmp_path / "vggsound.csv"
    labels.write_text(header + "-_gaZzFfzDQ,517,dog barking,train\n"
                      "-_gaZzFfzDQ,30,dog growling,train\n"
                      'a_B-c_d-E_f,0,"playing steel guitar, slide guitar",test\n'
                      "x9x9x9x9x9x,12,rain,train\n"
                      "unrelated00,5,cat purring,train\n")
    samples, _ = scan(DataSettings(data, labels=labels))
    assert {s.audio.name: s.label for s in samples} == {
        "-_gaZzFfzDQ_517000_527000.mp4": "dog barking",
        "-_gaZzFfzDQ_30000_40000.mp4": "dog growling",
        "a_B-c_d-E_f.mp4": "playing steel guitar, slide guitar",
        "x9x9x9x9x9x_000012.mkv": "rain"}
    # A ytid with two labels has no ytid-only key: which one a bare file means is unknown.
    assert "-_gaZzFfzDQ" not in read_labels(labels)


@pytest.mark.parametrize("text, line", [
    ("file,label\na.mp4,dog\nb.mp4\n", 3),
    ("ytid,start,label,split\nabc,12,dog,train\nabd,soon,cat,train\n", 3),
    ("a,b,c,d,e\n", 1),
    ("file,label\na.mp4,dog\na.mp4,cat\n", 3),
    ("file,label\n,dog\n", 2),
])
def test_malformed_labels_csv_names_file_and_line(tmp_path, text, line):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"bad\.csv, line {line}:"):
        read_labels(path)


def test_missing_labels_file_is_an_input_error(classes, tmp_path):
    with pytest.raises(InputError, match="nope.csv: no such labels file"):
        scan(DataSettings(classes, labels=tmp_path / "nope.csv"))


# --- skipped files --------------------------------------------------------------------------

def test_each_unusable_file_is_skipped_with_one_warning(tmp_path):
    good = write_clip(tmp_path / "good.mp4", 2.0)
    write_clip(tmp_path / "mute.mp4", 2.0, audio=False)
    write_audio(tmp_path / "lonely.wav", tone(2.0))
    write_clip(tmp_path / "blip.mp4", 0.2, samples=tone(0.2))
    (tmp_path / "text.mp4").write_text("this is not a video\n" * 50)
    (tmp_path / "empty.mkv").write_bytes(b"")
    truncated = good.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(truncated[: len(truncated) // 2])
    write_audio(tmp_path / "badpic.wav", tone(2.0))
    (tmp_path / "badpic.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    write_audio(tmp_path / "halfpic.wav", tone(2.0))
    jpeg = write_image(tmp_path / "halfpic.jpg", size=(256, 256)).read_bytes()
    (tmp_path / "halfpic.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    wav = bytearray(write_audio(tmp_path / "codec.wav", tone(2.0)).read_bytes())
    wav[20:22] = b"\x55\x55"  # a format tag no decoder knows: opens, cannot decode
    (tmp_path / "codec.wav").write_bytes(bytes(wav))
    write_image(tmp_path / "codec.png")

    samples, warnings = scan(DataSettings(tmp_path))

    assert [s.audio.name for s in samples] == ["good.mp4"]
    reasons = {Path(w.split(": ", 1)[0]).name: w for w in warnings}
    assert len(warnings) == len(reasons) == 9
    assert all(w.count("\n") == 0 and w.startswith(str(tmp_path)) for w in warnings)
    assert "no audio track" in reasons["mute.mp4"]
    assert "no picture" in reasons["lonely.wav"] and "lonely.jpg" in reasons["lonely.wav"]
    assert "too short" in reasons["blip.mp4"]
    assert "FFmpeg cannot open it" in reasons["text.mp4"]
    assert "empty" in reasons["empty.mkv"]
    assert "FFmpeg cannot open it" in reasons["cut.mp4"]
    assert "undecodable" in reasons["codec.wav"]
    assert "badpic.png cannot be read" in reasons["badpic.wav"]
    assert "halfpic.jpg cannot be read" in reasons["halfpic.wav"]


def test_video_without_picture_may_pair_with_an_image(tmp_path):
    write_audio(tmp_path / "song.m4a", tone(2.0))
    shutil.move(tmp_path / "song.m4a", tmp_path / "song.mp4")  # audio-only mp4
    write_image(tmp_path / "song.webp", color=BLUE)
    samples, warnings = scan(DataSettings(tmp_path))
    assert warnings == [] and samples[0].image == tmp_path / "song.webp"


def test_nothing_usable_raises_naming_the_folder(tmp_path):
    folder = re.escape(str(tmp_path))
    with pytest.raises(InputError, match=f"{folder}: no training data"):
        scan(DataSettings(tmp_path))
    write_clip(tmp_path / "mute.mp4", 2.0, audio=False)
    with pytest.raises(InputError, match=f"{folder}: none of the 1 media files is usable"):
        scan(DataSettings(tmp_path))
    with pytest.raises(InputError, match="no such folder"):
        scan(DataSettings(tmp_path / "missing"))


# --- examples -------------------------------------------------------------------------------

def test_classes_differ_in_picture_and_sound(classes):
    data = dataset(classes, size=(32, 32))
    for index, sample in enumerate(data.samples):
        example = data[index]
        red, _, blue = level(example["pixels"])
        wanted_hz = RED_HZ if sample.label == "red" else BLUE_HZ
        assert (red > blue) == (sample.label == "red")
        assert abs(peak_hz(example["waveform"]) - wanted_hz) < 25


def test_window_lies_in_the_first_ten_seconds_and_frame_inside_it(ramp):
    data = dataset(ramp, size=(16, 16))
    starts = []
    for epoch in range(12):
        data.set_epoch(epoch)
        example = data[0]
        start, frame_time = example["start"], example["frame_time"]
        starts.append(start)
        assert 0.0 <= start <= 5.0 and start <= frame_time < start + 5.0
        # The first frame at or after frame_time is shown: its level is between these two
        # (with a little slack for the YUV round trip).
        grey = level(example["pixels"])
        assert np.ptp(grey) < 2
        assert ramp_level(frame_time) - 3 <= grey.mean() <= ramp_level(frame_time + 1 / FPS) + 3
    assert np.ptp(starts) > 1.0  # the windows move around


def test_frame_at_seeks_to_the_wanted_time(ramp):
    data = dataset(ramp, size=(16, 16))
    for time in (0.0, 2.45, 2.5, 7.31, 11.9):
        grey = level(data.frame_at(0, time)).mean()
        assert ramp_level(time) - 3 <= grey <= ramp_level(time + 1 / FPS) + 3, time
    assert abs(level(data.frame_at(0, 60.0)).mean() - ramp_level(11.9)) < 3  # past the end


def test_waveform_is_load_window_at_the_drawn_start(ramp, classes):
    data = dataset(ramp)
    example = data[0]
    assert example["waveform"].shape == (5 * RATE,) and example["waveform"].dtype == torch.float32
    expected = load_window(data.samples[0].audio, Window(example["start"], 5.0))
    torch.testing.assert_close(example["waveform"], expected, rtol=0, atol=0)


def test_short_clip_starts_at_zero_loops_audio_and_takes_its_frame_from_the_clip(classes):
    data = dataset(classes, seed=3, size=(16, 16))
    for epoch in range(5):
        data.set_epoch(epoch)
        for index, sample in enumerate(data.samples):
            example = data[index]
            assert example["start"] == 0.0
            assert 0.0 <= example["frame_time"] < sample.duration
    expected = load_window(data.samples[0].audio, Window(0.0, 5.0))
    torch.testing.assert_close(data[0]["waveform"], expected, rtol=0, atol=0)


def test_silent_window_is_zeros_not_an_error(tmp_path):
    write_clip(tmp_path / "quiet.mp4", 2.0, samples=np.zeros((1, 2 * RATE), np.float32))
    waveform = dataset(tmp_path)[0]["waveform"]
    assert waveform.shape == (5 * RATE,) and not waveform.any()


@pytest.mark.parametrize("size", [(64, 40), (48, 48), (24, 64)])
def test_frames_have_the_asked_size_and_range(classes, size):
    data = dataset(classes, size=size)
    for index in range(len(data)):
        pixels = data[index]["pixels"]
        assert pixels.shape == (3, size[1], size[0]) and pixels.dtype == torch.float32
        assert pixels.min() >= -1.0 and pixels.max() <= 1.0


def test_image_is_resized_to_cover_then_center_cropped(tmp_path):
    write_audio(tmp_path / "a.wav", tone(2.0))
    # 200×50 image: green edges, red middle half. Scaled to height 32 (128×32), the center
    # 32×32 lies inside the red middle.
    write_image(tmp_path / "a.jpg", size=(200, 50), color=(0, 200, 0), middle=RED)
    data = dataset(tmp_path, size=(32, 32))
    red, green, _ = level(data[0]["pixels"])
    assert red > 200 and green < 50
    assert data[0]["frame_time"] == data[0]["start"] == 0.0


def test_same_seed_epoch_and_index_give_identical_examples(ramp):
    first, second = dataset(ramp, seed=7, size=(16, 16)), dataset(ramp, seed=7, size=(16, 16))
    for data in (first, second):
        data.set_epoch(3)
    a, b = first[0], second[0]
    assert a["start"] == b["start"] and a["frame_time"] == b["frame_time"]
    assert torch.equal(a["waveform"], b["waveform"]) and torch.equal(a["pixels"], b["pixels"])

    np.random.seed(123)  # global state must not matter
    torch.manual_seed(123)
    assert first[0]["start"] == a["start"]
    first.set_epoch(4)
    assert first[0]["start"] != a["start"]
    assert dataset(ramp, seed=8)[0]["start"] != dataset(ramp, seed=7)[0]["start"]


def test_window_starts_follow_the_generator(ramp):
    data = dataset(ramp)
    starts = data.window_starts(0, 6, np.random.default_rng(5))
    assert starts == data.window_starts(0, 6, np.random.default_rng(5))
    assert len(set(starts)) == 6 and all(0.0 <= s <= 5.0 for s in starts)
    drawn = data.draw(0, np.random.default_rng(5))
    assert drawn["start"] == starts[0]


def test_collate_stacks_tensors_and_keeps_labels(classes):
    data = dataset(classes, size=(16, 8))
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["waveform"].shape == (4, 5 * RATE)
    assert batch["pixels"].shape == (4, 3, 8, 16)
    assert batch["label"] == ["blue", "blue", "red", "red"]
    assert batch["index"].tolist() == [0, 1, 2, 3] and batch["index"].dtype == torch.int64
    assert batch["start"].shape == batch["frame_time"].shape == (4,)


def test_worker_processes_draw_the_same_examples(classes):
    data = dataset(classes, seed=11, size=(16, 16))
    data.set_epoch(2)

    def batches(workers: int) -> list[dict]:
        loader = torch.utils.data.DataLoader(data, batch_size=2, collate_fn=collate,
                                             num_workers=workers)
        return list(loader)

    for one, two in zip(batches(0), batches(2)):
        assert torch.equal(one["start"], two["start"])
        assert torch.equal(one["waveform"], two["waveform"])
        assert torch.equal(one["pixels"], two["pixels"])


# --- options --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, size", [("512x320", (512, 320)), ("64X40", (64, 40)),
                                        (" 512 × 512 ", (512, 512)), ("256", (256, 256))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["512x", "x320", "512x321", "0x64", "big", "512x320x3", "-64x64"])
def test_parse_size_rejects_bad_sizes(text):
    with pytest.raises(UsageError, match="WIDTHxHEIGHT|multiples of 8"):
        parse_size(text)


def test_settings_reject_a_window_longer_than_the_clip(tmp_path):
    with pytest.raises(UsageError, match="must fit"):
        DataSettings(tmp_path, audio_seconds=12.0)
    with pytest.raises(UsageError, match="longer than 0"):
        DataSettings(tmp_path, audio_seconds=0.0)
