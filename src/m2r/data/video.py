"""Reading videos: frames sampled uniformly from a video file by seeking (`sample_video`), how many to sample
(`frame_count`), and the model's `Video` input with the times of the frames actually decoded (`read_video`).
Used by the importer (`data.num_frames` / `data.video_fps`) and by VSI-Bench (`benchmark.num_frames` / `fps`).
Decoding needs PyAV (`pip install av`)."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from m2r.data.media import Video, sampled_fps


def uniform_indices(n: int, k: int) -> list[int]:
    """`k` frame indices spread uniformly over `n` frames, first and last included (k >= n: all)."""
    return np.linspace(0, n - 1, min(k, n)).round().astype(int).tolist()


def frame_count(n: int, rate: float | None, num_frames: int, fps: float | None) -> int:
    """How many frames to sample from `n` frames at `rate` per second: `num_frames`, or with `fps` the video's length
    times `fps`, at most `num_frames` and at least 2 (qwen-vl-utils' rule with max_frames = num_frames)."""
    if fps is None or not rate:
        return min(num_frames, n)
    return min(num_frames, n, max(2, round(n / rate * fps)))


def read_video(path: str | Path, num_frames: int, fps: float | None = None, stats: dict[str, int] | None = None):
    """The model's video input (`m2r.data.media.Video`) from a video file: `frame_count` frames sampled uniformly by
    seeking (`sample_video`), with their timestamps, so the model sees the real time between them."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        n = stream.frames or _frames_from_duration(stream, container, rate)
    rate = float(rate) if rate else None
    stats = stats if stats is not None else {}
    if not n or not rate:  # unknown length or rate: uniform frames, 1 s apart as a guess
        frames = sample_video(path, num_frames, stats)
        return Video(frames, 1.0)
    frames = sample_video(path, frame_count(n, rate, num_frames, fps), stats)
    # Times from the frames actually decoded (a container that overstates its length repeats its last frame: kept once).
    keep, seen = [], set()
    for j, i in enumerate(stats.get("indices") or []):
        if i not in seen:
            seen.add(i)
            keep.append((i, frames[j]))
    if len(keep) != len(frames) or not keep:
        keep = keep or list(enumerate(frames))
    ts = [i / rate for i, _ in keep]
    return Video([f for _, f in keep], sampled_fps(ts, rate), ts)


def sample_video(path: str | Path, num_frames: int, stats: dict[str, int] | None = None) -> list:
    """`num_frames` uniformly sampled frames of a video as RGB PIL images, read by seeking.

    For each sampled frame: seek to the keyframe at or before its timestamp, decode forward to it,
    and convert only that frame to PIL. Time is about k * GOP decoded frames, memory one decoded
    frame plus the k images. The next target is reached by decoding on, without a seek, when it is
    no farther ahead than a keyframe-to-target distance already seen (dense sampling of a short
    video then costs one pass, not k GOPs). Streams without a frame count, frame rate or timestamps
    fall back to one sequential pass that keeps only the sampled frames. `stats`, if given,
    receives counts: `decoded` frames, `seeks`, `images` converted to PIL.
    """
    import av

    stats = stats if stats is not None else {}
    stats.update(decoded=0, seeks=0, images=0, indices=[])  # indices: the stream index of each frame returned
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate, tb = stream.average_rate or stream.guessed_rate, stream.time_base
        n = stream.frames or _frames_from_duration(stream, container, rate)
        if n and rate and tb:
            frames = _sample_by_seeking(container, stream, n, num_frames, Fraction(rate) * Fraction(tb), stats)
            if frames is not None:
                return frames
    return _sample_sequentially(path, num_frames, stats)


def _frames_from_duration(stream, container, rate) -> int:
    """Frame count from the stream's (or else the container's) duration, 0 when unknown."""
    if not rate:
        return 0
    if stream.duration and stream.time_base:
        seconds = stream.duration * Fraction(stream.time_base)
    elif container.duration:
        seconds = Fraction(container.duration, 1_000_000)  # AV_TIME_BASE
    else:
        return 0
    return int(round(seconds * Fraction(rate)))


def _sample_by_seeking(container, stream, n: int, k: int, frames_per_tick: Fraction, stats: dict[str, int]) -> list | None:
    """Frames `uniform_indices(n, k)` by seek + short decode; None if the stream's timestamps or
    frame count do not hold up (then the caller decodes sequentially)."""
    start = stream.start_time or 0
    out = []
    decoder, current, reach = None, -1, 0  # live decode iterator, index of its last frame, farthest keyframe-to-target distance seen
    for target in uniform_indices(n, k):
        if decoder is None or not (current < target <= current + reach):
            container.seek(start + math.floor(target / frames_per_tick), stream=stream, backward=True, any_frame=False)
            stats["seeks"] += 1
            decoder, current, first = container.decode(stream), -1, None
        else:
            first = current
        hit = last = None
        for frame in decoder:
            stats["decoded"] += 1
            if frame.pts is None:
                return None
            current = round((frame.pts - start) * frames_per_tick)
            first = current if first is None else first
            last = frame
            if current >= target:
                hit = frame
                break
        if hit is None:  # past the end: the frame count overstated the stream; take its last frame
            if last is None:
                return None
            hit, decoder = last, None
        reach = max(reach, current - first)
        out.append(hit.to_image())  # rgb24
        stats.setdefault("indices", []).append(current)  # the hit's index (past the end: the last frame's)
        stats["images"] += 1
    return out


def _sample_sequentially(path: str | Path, k: int, stats: dict[str, int]) -> list:
    """Count the packets (demuxing only, no decoding), then decode once keeping only the sampled frames."""
    import av

    stats["indices"] = []  # a seeking pass that gave up may have recorded some
    with av.open(str(path)) as container:
        n = sum(1 for p in container.demux(video=0) if p.size)
    if n == 0:
        raise ValueError(f"{path}: the video stream has no frames")
    wanted = set(uniform_indices(n, k))
    out = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            stats["decoded"] += 1
            if i in wanted:
                out.append(frame.to_image())
                stats.setdefault("indices", []).append(i)
                stats["images"] += 1
                if len(out) == len(wanted):
                    break
    return out
