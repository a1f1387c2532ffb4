"""``audiotoken video``: keyframes from the sound (keyframes.py), their images and the slerped
frames between them (frames.py), the MP4 writer (mp4.py), the resumable work folder
(workfolder.py), the storyboard (storyboard.py), outputs and their names (outputs.py), and the
per-file run (run.py). See docs/video.md."""

from audiotoken_cli.video.run import (
    VideoEvents,
    VideoResult,
    VideoSettings,
    check_settings,
    make_video,
    video_files,
)

__all__ = ["VideoEvents", "VideoResult", "VideoSettings", "check_settings", "make_video",
           "video_files"]
