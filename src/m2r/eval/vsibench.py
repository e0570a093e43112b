"""VSI-Bench (nyu-visionx/VSI-Bench): loader for its JSONL/parquet + videos or pre-extracted frames,
frame sampling by seeking, and scoring and aggregation after the official code.

Native fields: `id`, `dataset` (arkitscenes, scannet, scannetpp), `scene_name`, `question_type`,
`question`, `options` (list, or null for numeric questions), `ground_truth`. Videos live at
`<root>/<dataset>/<scene_name>.mp4`; `benchmark.frames_dir` may instead hold pre-extracted frames
in `<frames_dir>/<dataset>/<scene_name>/*.jpg|png`. `benchmark.num_frames` frames are sampled
uniformly, frame `round(linspace(0, n - 1, k))` as qwen-vl-utils (the Qwen2-VL wrapper of the
official harness) does; videos are read by seeking to each sampled frame (`sample_video`), so a
three-minute video costs k short decodes, not a full one (decoding needs `av`: pip install av).

Scoring follows `lmms_eval/tasks/vsibench/utils.py` of vision-x-nyu/thinking-in-space (commit
51e089c, the authors' harness): `vsibench_process_results`, `fuzzy_matching`, `exact_match`,
`to_float`, `mean_relative_accuracy`, `vsibench_aggregate_results`.

- The answer is the first space-separated token of the response with trailing periods removed
  (`fuzzy_matching`: split on " " only, so "B.\\nBecause" stays "B.\\nBecause" and is wrong).
- Multiple choice (`MCA_QUESTION_TYPES`): that token equals the ground-truth letter, ignoring
  case ("b." is right, "(B)", "B)", "B:" and "Option B" are wrong).
- Numeric (`NA_QUESTION_TYPES`): `float()` of that token ("4.", "1e1", "1_000" parse; "4m",
  "4,000", "four" do not and score 0), then mean relative accuracy, MRA = mean over theta in
  numpy.linspace(0.5, 0.95, 10) of 1[|pred - gt| / gt <= 1 - theta], float for float.
- Overall = mean of the task scores present, relative direction being the mean of its
  easy/medium/hard levels.

Departures, and what they do to the score:

1. Where the answer is read. Before the official rules, the response is stripped of surrounding
   whitespace (as the harness's model wrappers do, e.g. `llava_onevision.py`), the text after the
   last `</think>` is kept, then the inside of the last `<answer>...</answer>`, then the content of
   the last balanced `\\boxed{}` if there is one. On plain answers ("3", "B.") this changes
   nothing; on M2-format responses ("<think>..</think><answer>\\boxed{3}</answer>", which the
   official code scores 0 because the first token is "<think>...") it reads the intended answer,
   so M2 models score higher than the official code would give them. An empty `<answer>` scores 0.
2. `mra` with ground truth 0 returns 1 iff pred == 0 and divides by |gt| (the official code raises
   ZeroDivisionError, and a negative gt would always score 1); no VSI-Bench ground truth is <= 0.
3. Newer lmms-eval (EvolvingLMMs-Lab) reads numbers with a lenient `extract_number` (number words,
   "3 chairs" mid-sentence); we follow the authors' stricter `to_float(fuzzy_matching(...))`.
4. When some rel-direction levels are missing we average those present (the official code raises).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2r.data.media import Video, frame_files, sampled_fps
from m2r.data.video import frame_count, read_video, sample_video, uniform_indices  # noqa: F401  (sample_video: the frame reader VSI-Bench rows use)
from m2r.eval.items import EvalItem, read_rows
from m2r.rewards.extract import last_boxed

NUMERIC = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
CHOICE = ("object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard", "route_planning", "obj_appearance_order")
TASKS = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation", "object_rel_distance", "object_rel_direction", "route_planning", "obj_appearance_order")
THRESHOLDS = np.linspace(0.5, 0.95, 10)
PRE_PROMPT = "These are frames of a video."
POST_PROMPT = {"numeric": "Please answer the question using a single word or phrase.", "choice": "Answer with the option's letter from the given choices directly."}


@dataclass
class VideoRef:
    """A video (or a folder of frames extracted at `frames_fps` per second) to sample frames from, uniformly:
    `num_frames` of them, or with `fps` the video's length times `fps`, at most `num_frames` (`frame_count`)."""

    path: Path
    num_frames: int
    fps: float | None = None
    frames_fps: float = 1.0

    def video(self):
        """The sampled frames as the model's video input (`m2r.data.media.Video`), with their timestamps."""
        from PIL import Image

        if self.path.is_dir():
            files = frame_files(self.path)
            if not files:
                raise FileNotFoundError(f"no frames in {self.path}")
            idx = uniform_indices(len(files), frame_count(len(files), self.frames_fps, self.num_frames, self.fps))
            ts = [i / self.frames_fps for i in idx]
            return Video([Image.open(files[i]).convert("RGB") for i in idx], sampled_fps(ts, self.frames_fps), ts)
        if importlib.util.find_spec("av") is None:
            raise ImportError(f"decoding {self.path} needs PyAV: pip install av (or pre-extract frames and set benchmark.frames_dir)")
        if not self.path.exists():
            raise FileNotFoundError(f"no video at {self.path}; check benchmark.root (videos at <root>/<dataset>/<scene_name>.mp4) or set benchmark.frames_dir")
        return read_video(self.path, self.num_frames, self.fps)

    def frames(self) -> list:
        """The sampled frames alone, as separate images."""
        return self.video().frames


def load(root: str | Path, split: str = "test", num_frames: int = 8, frames_dir: str | Path | None = None, fps: float | None = None, frames_fps: float = 1.0) -> list[EvalItem]:
    """VSI-Bench rows, each with its video as a `VideoRef` (the model gets it through the processor's video path)."""
    root = Path(root)
    if num_frames < 1 or (fps is not None and fps <= 0) or frames_fps <= 0:
        raise ValueError(f"benchmark.num_frames={num_frames}, benchmark.fps={fps}, benchmark.frames_fps={frames_fps}: need num_frames >= 1 and rates > 0 (fps: null samples num_frames uniformly)")
    items = []
    for r in read_rows(root, split, "VSI-Bench"):
        media = Path(frames_dir) / r["dataset"] / r["scene_name"] if frames_dir else root / r["dataset"] / f"{r['scene_name']}.mp4"
        items.append(EvalItem(
            key={"id": r["id"]}, question=r["question"], options=list(r.get("options") or []), answer=str(r["ground_truth"]),
            images=[VideoRef(media, num_frames, fps, frames_fps)], meta={"question_type": r["question_type"], "subject": r["question_type"], "dataset": r.get("dataset")},
        ))
    return items


def prompt(item: EvalItem) -> str:
    if item.meta.get("question_type") in NUMERIC:
        return f"{PRE_PROMPT}\n{item.question}\n{POST_PROMPT['numeric']}"
    return f"{PRE_PROMPT}\n{item.question}\nOptions:\n" + "\n".join(item.options) + f"\n{POST_PROMPT['choice']}"


def mra(pred: float, gt: float) -> float:
    """Mean relative accuracy over the 10 thresholds 0.50..0.95 (NaN and inf predictions score 0)."""
    if gt == 0:
        return float(pred == 0)
    return float((abs(pred - gt) / abs(gt) <= 1 - THRESHOLDS).mean())


def answer_text(response: str) -> str | None:
    """The part of a response the official rules read (departure 1), None for an empty `<answer>`."""
    text = (response or "").strip()
    text = text.rpartition("</think>")[2] if "</think>" in text else text
    a = text.rfind("<answer>")
    if a != -1:
        text = text[a + len("<answer>"):].partition("</answer>")[0]
        if not text.strip():
            return None
    boxed = last_boxed(text)
    return (boxed if boxed is not None else text).strip()


def first_token(text: str) -> str:
    """The official `fuzzy_matching`: the text before the first space, trailing periods removed, then stripped."""
    return text.split(" ", 1)[0].rstrip(".").strip()


def to_float(text: str) -> float | None:
    """The official `to_float`: Python's float() of the token, None where it raises."""
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        return None


def score(item: EvalItem, response: str) -> dict[str, Any]:
    text = answer_text(response)
    token = first_token(text) if text is not None else ""
    if item.meta.get("question_type") in NUMERIC:
        x = to_float(token)
        s = mra(x, float(item.answer)) if x is not None else 0.0
        return {"extracted": x, "correct": s == 1.0, "score": s}
    ok = bool(token) and token.lower() == item.answer.strip().lower()
    return {"extracted": token or None, "correct": ok, "score": float(ok)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    by_type: dict[str, list[float]] = {}
    for it, s in zip(items, scores):
        by_type.setdefault(it.meta.get("question_type", "unknown"), []).append(s)
    out: dict[str, Any] = {f"type/{k}": sum(v) / len(v) for k, v in sorted(by_type.items())}
    levels = [out[f"type/object_rel_direction_{l}"] for l in ("easy", "medium", "hard") if f"type/object_rel_direction_{l}" in out]
    task_scores = {t: out.get(f"type/{t}") for t in TASKS}
    task_scores["object_rel_direction"] = sum(levels) / len(levels) if levels else None
    out |= {f"task/{t}": v for t, v in task_scores.items()}
    present = [v for v in task_scores.values() if v is not None]
    out["overall"] = sum(present) / len(present) if present else None
    out["score"] = out["overall"]
    return out
