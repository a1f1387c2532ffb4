"""probe(): streams and durations from the container, in the decoder worker, on real files
written by the factories (WAV, MP3, MP4 with and without sound, a live WebM without a duration
in its header)."""

from __future__ import annotations

import pytest
from factories import tone, write_audio
from media_factories import write_clip, write_live_webm

import audiotoken_cli as audiotoken
from audiotoken_cli.audio.media import MediaInfo, probe, read_info
from audiotoken_cli.audio.worker import TEST_FAULT_VARIABLE
from audiotoken_cli.errors import InputError


def test_a_wav_gives_its_exact_length_rate_and_channels(tmp_path):
    path = write_audio(tmp_path / "a.wav", tone(2.5, 22050, channels=2), rate=22050)
    info = probe(path)
    assert info == MediaInfo(path=path, duration=2.5, has_audio=True, sample_rate=22050,
                             channels=2, has_video=False, video_duration=0.0, width=0, height=0)


def test_an_mp3_gives_its_length_within_one_frame(tmp_path):
    info = probe(write_audio(tmp_path / "a.mp3", tone(3.0, 44100), rate=44100))
    assert info.has_audio and not info.has_video
    assert (info.sample_rate, info.channels) == (44100, 1)
    assert info.duration == pytest.approx(3.0, abs=1152 / 44100 + 0.03)  # encoder delay/padding


def test_an_mp4_with_sound_has_both_streams(tmp_path):
    info = probe(write_clip(tmp_path / "v.mp4", 2.0, fps=10, size=(64, 48)))
    assert info.has_audio and info.has_video
    assert (info.width, info.height, info.sample_rate, info.channels) == (64, 48, 16000, 1)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.video_duration == pytest.approx(2.0, abs=0.11)


def test_a_silent_mp4_has_video_and_no_audio(tmp_path):
    info = probe(write_clip(tmp_path / "v.mp4", 1.5, audio=False))
    assert not info.has_audio and info.has_video
    assert (info.sample_rate, info.channels) == (0, 0)
    assert info.duration == pytest.approx(1.5, abs=0.11)  # the file's, as it has no audio
    assert info.video_duration == pytest.approx(1.5, abs=0.11)


def test_a_live_webm_without_a_header_duration_is_measured_by_demuxing(tmp_path):
    path = write_live_webm(tmp_path / "rec.webm", 2.0)
    import av

    with av.open(str(path)) as container:  # the premise: FFmpeg finds no duration to read
        assert container.duration is None and container.streams.audio[0].duration is None
    info = probe(path)
    assert info.has_audio and not info.has_video
    assert info.duration == pytest.approx(2.0, abs=0.03)  # opus frames are 20 ms


@pytest.mark.parametrize("make, message", [
    (lambda folder: folder / "missing.wav", "no such file"),
    (lambda folder: folder, "is a directory, not an audio file"),
])
def test_bad_paths_are_one_line_errors_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as error:
        probe(path)
    assert str(error.value) == f"{path}: {message}"


def test_text_is_not_media(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are not sounds\n" * 20)
    with pytest.raises(InputError, match=r"notes\.wav: not an audio or video file FFmpeg"):
        probe(path)


def test_a_crash_while_probing_costs_an_error_not_the_caller(tmp_path, monkeypatch):
    path = write_audio(tmp_path / "boom.wav", tone(1.0))
    monkeypatch.setenv(TEST_FAULT_VARIABLE, "crash:boom")
    with pytest.raises(InputError, match=r"boom\.wav: the decoder crashed \(signal 11\)"):
        probe(path)


def test_probe_in_the_worker_equals_reading_in_process(tmp_path):
    path = write_clip(tmp_path / "v.mp4", 1.0)
    assert probe(path) == read_info(path)


def test_probe_and_media_info_are_on_the_package_face():
    assert audiotoken.probe is probe and audiotoken.MediaInfo is MediaInfo
