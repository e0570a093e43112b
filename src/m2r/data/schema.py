"""The m2r sample schema (DESIGN.md section 3) and its validation.

A sample is a JSON object in a shard; its images are separate tar members named
`<id>.<member>` where `<member>` is one of the names in `images` (e.g. `img0.png`). A sample may
also carry videos (`videos`), each a list of frame members (e.g. `vid0_f003.png`) with the rate
of those frames (`fps`) or the time of each (`timestamps`, seconds); `members()` lists a sample's
image members first, then every video's frames in order.
Validation happens at build time so a training run never meets a bad sample; every error
names where the sample came from, its id, the field, and how to fix it.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

ANSWER_TYPES = ("choice", "number", "expression", "text")
ID_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class BadSampleError(ValueError):
    """A sample that fails validation. `where` is a file and row, or a generator name."""

    def __init__(self, where: str, sample_id: str | None, field_name: str, problem: str, fix: str):
        self.where, self.sample_id, self.field_name = where, sample_id, field_name
        self.problem, self.fix = problem, fix
        sid = sample_id if sample_id is not None else "<no id>"
        super().__init__(f"{where}: sample {sid!r}, field {field_name!r}: {problem}. Fix: {fix}")


@dataclass
class Sample:
    id: str
    task: str
    question: str
    answer: str
    answer_type: str
    images: list[str] = field(default_factory=list)  # member names inside the shard, e.g. ["img0.png"]
    videos: list[dict[str, Any]] = field(default_factory=list)  # [{"frames": ["vid0_f000.png", ...], "fps": 2.0}] (or "timestamps": [...])
    choices: list[str] = field(default_factory=list)  # option texts; `answer` is then a letter
    cot: str | None = None  # reasoning trace in the M2 response format (SFT target)
    quality: float | None = None
    difficulty: float | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def members(self) -> list[str]:
        """Every media member of the sample: its images, then each video's frames."""
        return list(self.images) + [f for v in self.videos for f in (v.get("frames") or [])]

    def video_fps(self, i: int) -> float:
        """The frame rate of video `i`: its `fps`, or the mean rate of its `timestamps`."""
        from m2r.data.media import fps_from_timestamps

        v = self.videos[i]
        return float(v["fps"]) if v.get("fps") else fps_from_timestamps(v["timestamps"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def task_slug(task: str) -> str:
    """File-system name of a task: `spatial/count` -> `spatial_count`."""
    return task.replace("/", "_")


def validate_sample(sample: Sample, images: list[bytes], where: str, require_cot: bool = False) -> None:
    """Raise BadSampleError if the sample or its image bytes break the schema."""
    sid = sample.id if isinstance(sample.id, str) else None

    def bad(field_name: str, problem: str, fix: str) -> None:
        raise BadSampleError(where, sid, field_name, problem, fix)

    if not isinstance(sample.id, str) or not sample.id:
        bad("id", "missing or not a string", "give every row a unique string id")
    if "." in sample.id:
        bad("id", "contains a dot, which WebDataset reads as the start of a file extension", "replace dots in ids, e.g. with '_'")
    if not ID_RE.match(sample.id):
        bad("id", "has characters other than letters, digits, '_' and '-'", "use only [A-Za-z0-9_-] in ids")
    if not isinstance(sample.task, str) or not sample.task:
        bad("task", "missing", "give every row a task name such as 'spatial/count' or 'general/geometry'")
    if not isinstance(sample.question, str) or not sample.question.strip():
        bad("question", "missing or empty", "give every row the question text")
    if sample.answer_type not in ANSWER_TYPES:
        bad("answer_type", f"unknown answer_type {sample.answer_type!r}", f"use one of {', '.join(ANSWER_TYPES)}")
    if sample.answer is None or not str(sample.answer).strip():
        bad("answer", "missing or empty", "give every row its ground-truth answer (a letter for multiple choice)")
    if sample.answer_type == "number":
        try:
            float(str(sample.answer).replace(",", ""))
        except ValueError:
            bad("answer", f"answer_type is 'number' but answer {sample.answer!r} is not a number", "write the number alone, or use answer_type 'expression'/'text'")
    if sample.answer_type == "choice":
        if len(sample.choices) < 2:
            bad("choices", "answer_type is 'choice' but fewer than two choices are given", "list the option texts in 'choices'")
        letters = LETTERS[: len(sample.choices)]
        if str(sample.answer).strip() not in letters:
            bad("answer", f"multiple-choice answer {sample.answer!r} is not one of the letters {letters}", "give the letter of the correct option")
    if not isinstance(sample.videos, list):
        bad("videos", "is not a list", 'give videos as a list of {"frames": [...], "fps": ...}')
    for i, v in enumerate(sample.videos):
        if not isinstance(v, dict) or not isinstance(v.get("frames"), list) or not v["frames"]:
            bad("videos", f"video {i} has no frames", 'give each video its frame members, {"frames": ["vid0_f000.png", ...], "fps": 2.0}')
        if not all(isinstance(f, str) and f for f in v["frames"]):
            bad("videos", f"video {i} has frame names {v['frames'][:4]!r}", "name each frame member with a string like 'vid0_f000.png'")
        ts = v.get("timestamps")
        if ts is not None:
            if not isinstance(ts, list) or len(ts) != len(v["frames"]):
                bad("videos", f"video {i} has {len(v['frames'])} frames but timestamps {ts!r}", "give one timestamp (seconds) per frame, or drop them and give fps")
            try:
                sample.video_fps(i)
            except (TypeError, ValueError) as e:
                bad("videos", f"video {i}: {e}", "list the frames in time order with increasing timestamps")
        fps = v.get("fps")
        if fps is not None and not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
            bad("videos", f"video {i} has fps {fps!r}", "give the rate of the stored frames as a finite number > 0, or leave it out and give timestamps")
        if ts is None and fps is None:
            bad("videos", f"video {i} has fps {fps!r} and no timestamps", "give the rate of the stored frames as fps > 0 (e.g. 8 frames sampled from a 16 s clip: fps 0.5), or per-frame timestamps")
        if len(set(v["frames"])) != len(v["frames"]) or set(v["frames"]) & set(sample.images):
            bad("videos", f"video {i} repeats a member name", "give every frame and image its own member name")
    members = sample.members()
    if len(images) != len(members):
        what = f"{len(sample.images)} image(s)" + (f" and {len(members) - len(sample.images)} video frame(s)" if sample.videos else "")
        bad("images", f"lists {what} but {len(images)} were provided", "make 'images' (and 'videos') match the image data")
    for name, data in zip(members, images):
        field_name = "images" if name in sample.images else "videos"
        if "." in name and not name.split(".")[-1].lower() in ("png", "jpg", "jpeg", "webp"):
            bad(field_name, f"member {name!r} is not a png/jpg/webp name", "name image members like 'img0.png' and frames like 'vid0_f000.jpg'")
        if name.count(".") > 1:
            bad(field_name, f"member {name!r} has more than one dot", "use one dot, before the extension ('vid0_f000.jpg')")
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.verify()
        except Exception as e:  # PIL raises many types for bad bytes
            bad(field_name, f"{'image' if field_name == 'images' else 'frame'} {name!r} cannot be decoded ({type(e).__name__}: {e})", "replace the file with a valid PNG/JPEG or drop the row")
    if require_cot and not (sample.cot and sample.cot.strip()):
        bad("cot", "missing reasoning trace, which SFT needs as its target", "add a 'cot' in the M2 format (<think>...</think><answer>...</answer>)")


def format_question(sample: Sample) -> str:
    """The user text of a sample: the question, then lettered options for multiple choice."""
    if not sample.choices:
        return sample.question
    opts = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(sample.choices))
    return f"{sample.question}\nOptions:\n{opts}"
