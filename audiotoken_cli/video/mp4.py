"""Writing the video: H.264 (yuv420p) frames as they come, with the source's audio as AAC.

Everything goes through PyAV (FFmpeg inside the wheel); no system FFmpeg is needed. Frames are
encoded the moment they are given, and the audio is copied across in step with them (decoded,
resampled, re-encoded up to the latest frame's time), so neither is ever held whole and the
muxer interleaves the two streams without buffering.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


def h264_codec() -> str:
    """libx264 when the PyAV wheel has it (it does on PyPI), else FFmpeg's other H.264 encoder."""
    import av

    for name in ("libx264", "h264", "libopenh264"):
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except Exception:  # noqa: BLE001 - a decoder-only name; try the next
                continue
    raise RuntimeError("this PyAV build has no H.264 encoder")


class Mp4Writer:
    """``with Mp4Writer(target, source, fps, width, height) as out: out.write(frame)...``

    ``frame`` is an (H, W, 3) uint8 RGB array. On leaving, the encoders are flushed and the rest
    of the source's audio is muxed in, so the video is as long as the audio.
    """

    def __init__(self, target: Path, source: Path, fps: int, width: int, height: int,
                 crf: int = 18):
        self.target, self.source, self.fps = Path(target), Path(source), fps
        self.width, self.height, self.crf = width, height, crf
        self.frames = 0

    def __enter__(self) -> Mp4Writer:
        import av

        self._out = av.open(str(self.target), "w", format="mp4")
        try:
            self._video = self._out.add_stream(h264_codec(), rate=self.fps)
            self._video.width, self._video.height = self.width, self.height
            self._video.pix_fmt = "yuv420p"
            self._video.codec_context.time_base = Fraction(1, self.fps)
            self._video.options = {"crf": str(self.crf)}
            self._audio = _AudioCopier(self.source, self._out)
        except BaseException:
            self._out.close()
            raise
        return self

    def write(self, frame: np.ndarray) -> None:
        import av

        picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        picture.pts = self.frames
        picture.time_base = Fraction(1, self.fps)
        for packet in self._video.encode(picture):
            self._out.mux(packet)
        self.frames += 1
        self._audio.copy_until(self.frames / self.fps)

    def __exit__(self, kind, error, trace) -> None:
        try:
            if kind is None:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
                self._audio.copy_until(None)
        finally:
            self._audio.close()
            self._out.close()


class _AudioCopier:
    """Decode the source's first audio track and encode it as AAC into ``out``, in step."""

    def __init__(self, source: Path, out):
        import av

        self._input = av.open(str(source))
        stream = self._input.streams.audio[0]
        rate = stream.rate if stream.rate in AAC_RATES else 48000
        layout = "mono" if stream.channels == 1 else "stereo"
        self._stream = out.add_stream("aac", rate=rate, layout=layout)
        self._out = out
        self._rate = rate
        # The AAC encoder wants 1024-sample frames; the resampler cuts them.
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate,
                                            frame_size=self._stream.codec_context.frame_size or 1024)
        self._frames = self._input.decode(stream)
        self._written = 0  # samples at the output rate
        self._done = False

    def copy_until(self, seconds: float | None) -> None:
        """Encode audio up to ``seconds`` (None: all of it, then flush)."""
        while not self._done and (seconds is None or self._written < seconds * self._rate):
            frame = next(self._frames, None)
            if frame is None:
                self._done = True
                self._encode(self._resampler.resample(None))
                self._mux(self._stream.encode(None))
                return
            frame.pts = None  # let the resampler count samples; sources may have gaps or offsets
            self._encode(self._resampler.resample(frame))

    def _encode(self, frames) -> None:
        for frame in frames:
            frame.pts = self._written
            frame.time_base = Fraction(1, self._rate)
            self._written += frame.samples
            self._mux(self._stream.encode(frame))

    def _mux(self, packets) -> None:
        for packet in packets:
            self._out.mux(packet)

    def close(self) -> None:
        self._input.close()
