"""Videos beside images: the `Video` a sample's frames decode into, and the one place where a batch
of samples' media becomes the processor's `images=` and `videos=` arguments.

A sample's media is a list in the order its message shows them: its still images (PIL), then its
videos (`Video`). The chat message gets one `{"type": "image"}` or `{"type": "video"}` entry per
item, and the processor receives the images and the videos as two lists, each in message order,
which is how Qwen-VL processors pair placeholders with pixels.

A video carries the frames already sampled (m2r samples frames when it builds shards or loads a
benchmark, never in the processor) and its frame rate, `fps`, the frames per second *of the given
frames*. Qwen2.5-VL turns it into `second_per_grid_ts = temporal_patch_size / fps`, the time each
temporal patch spans, which sets the temporal rotary positions; other models ignore it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image


FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass
class Video:
    """Sampled frames of one video (RGB PIL images, in time order) and their rate in frames per second."""

    frames: list[Image.Image]
    fps: float
    timestamps: list[float] | None = field(default=None)  # seconds of each frame, when known

    def __post_init__(self):
        if not self.frames:
            raise ValueError("a Video needs at least one frame")
        if not (self.fps and self.fps > 0):
            raise ValueError(f"a Video needs fps > 0 (the rate of its sampled frames), got {self.fps!r}")

    def __len__(self) -> int:
        return len(self.frames)


def fps_from_timestamps(timestamps: Sequence[float]) -> float:
    """The mean rate of frames taken at `timestamps` (seconds, increasing); 1.0 for a single frame."""
    ts = [float(t) for t in timestamps]
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"frame timestamps must increase strictly, got {ts}")
    return 1.0 if len(ts) < 2 else (len(ts) - 1) / (ts[-1] - ts[0])


def sampled_fps(timestamps: Sequence[float], source_rate: float) -> float:
    """The rate to give frames sampled at `timestamps` (seconds) from a video of `source_rate` frames per second:
    their number over the time they cover, counting one source frame's duration for the last (qwen-vl-utils' rule:
    k frames sampled uniformly from n give k * rate / n)."""
    ts = [float(t) for t in timestamps]
    return len(ts) / (ts[-1] - ts[0] + 1.0 / source_rate)


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def frame_files(folder: Path) -> list[Path]:
    """The jpg/png/webp frames in a folder, in time order: names sorted with their numbers read as numbers, so
    ffmpeg's `1.png ... 12.png` come out 1, 2, ..., 12 (a plain sort would put 10, 11, 12 after 1)."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=lambda p: _natural_key(p.name))


def split_media(media: Sequence[Any]) -> tuple[list[Image.Image], list[Video]]:
    """(images, videos) of one sample's media, each in order."""
    images = [m for m in media if not isinstance(m, Video)]
    videos = [m for m in media if isinstance(m, Video)]
    return images, videos


def count_media(media: Sequence[Any]) -> tuple[int, int]:
    """(number of images, number of videos)."""
    n_vid = sum(isinstance(m, Video) for m in media)
    return len(media) - n_vid, n_vid


def content_parts(media: Sequence[Any]) -> list[dict]:
    """The chat-message placeholders of one sample's media, in order."""
    return [{"type": "video"} if isinstance(m, Video) else {"type": "image"} for m in media]


def processor_inputs(processor, texts: list[str], media_lists: Sequence[Sequence[Any]], **kwargs):
    """`processor(text=texts, images=..., videos=...)` for a batch whose row i shows `media_lists[i]`.

    Videos go in with their frames as sampled (`do_sample_frames=False`) and their fps, so that
    Qwen2.5-VL's temporal positions follow the real time between frames.
    """
    images, videos = split_media([m for media in media_lists for m in media])
    if videos:
        from transformers.video_utils import VideoMetadata

        kwargs["videos"] = [v.frames for v in videos]
        kwargs["videos_kwargs"] = {
            **kwargs.get("videos_kwargs", {}),
            "do_sample_frames": False,
            "video_metadata": [VideoMetadata(total_num_frames=len(v.frames), fps=float(v.fps)) for v in videos],
        }
    return processor(text=texts, images=images or None, **kwargs)
