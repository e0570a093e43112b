"""VSI-Bench (nyu-visionx/VSI-Bench): loader for its JSONL/parquet + videos or pre-extracted frames,
scoring and aggregation after the official code (thinking-in-space).

Native fields: `id`, `dataset` (arkitscenes, scannet, scannetpp), `scene_name`, `question_type`,
`question`, `options` (list, or null for numeric questions), `ground_truth`. Videos live at
`<root>/<dataset>/<scene_name>.mp4`; `benchmark.frames_dir` may instead hold pre-extracted frames
in `<frames_dir>/<dataset>/<scene_name>/*.jpg|png`. `benchmark.num_frames` frames are sampled
uniformly (decoding videos needs `av`: pip install av).

Scoring: multiple-choice types by exact match of the option letter; numeric types by mean
relative accuracy, MRA = mean over theta in numpy.linspace(0.5, 0.95, 10) of
1[|pred - gt| / gt <= 1 - theta]. Overall = mean of the 8 task scores, relative direction being
the mean of its easy/medium/hard levels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2r.eval.items import EvalItem, read_rows
from m2r.rewards.extract import extract_answer, parse_number

NUMERIC = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation")
CHOICE = ("object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard", "route_planning", "obj_appearance_order")
TASKS = ("object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation", "object_rel_distance", "object_rel_direction", "route_planning", "obj_appearance_order")
THRESHOLDS = np.linspace(0.5, 0.95, 10)
POST_PROMPT = {"numeric": "Please answer the question using a single word or phrase.", "choice": "Answer with the option's letter from the given choices directly."}


@dataclass
class VideoRef:
    """A video (or a folder of frames) to sample `num_frames` frames from, uniformly."""

    path: Path
    num_frames: int

    def frames(self):
        from PIL import Image

        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            if not files:
                raise FileNotFoundError(f"no frames in {self.path}")
            idx = np.linspace(0, len(files) - 1, min(self.num_frames, len(files))).round().astype(int)
            return [Image.open(files[i]).convert("RGB") for i in idx]
        try:
            import av
        except ImportError as e:
            raise ImportError(f"decoding {self.path} needs PyAV: pip install av (or pre-extract frames and set benchmark.frames_dir)") from e
        with av.open(str(self.path)) as container:
            decoded = [f.to_image() for f in container.decode(video=0)]
        idx = np.linspace(0, len(decoded) - 1, min(self.num_frames, len(decoded))).round().astype(int)
        return [decoded[i].convert("RGB") for i in idx]


def load(root: str | Path, split: str = "test", num_frames: int = 8, frames_dir: str | Path | None = None) -> list[EvalItem]:
    root = Path(root)
    items = []
    for r in read_rows(root, split, "VSI-Bench"):
        media = Path(frames_dir) / r["dataset"] / r["scene_name"] if frames_dir else root / r["dataset"] / f"{r['scene_name']}.mp4"
        items.append(EvalItem(
            key={"id": r["id"]}, question=r["question"], options=list(r.get("options") or []), answer=str(r["ground_truth"]),
            images=[VideoRef(media, num_frames)], meta={"question_type": r["question_type"], "subject": r["question_type"], "dataset": r.get("dataset")},
        ))
    return items


def prompt(item: EvalItem) -> str:
    if item.meta.get("question_type") in NUMERIC:
        return f"These are frames of a video.\n{item.question}\n{POST_PROMPT['numeric']}"
    return f"These are frames of a video.\n{item.question}\nOptions:\n" + "\n".join(item.options) + f"\n{POST_PROMPT['choice']}"


def mra(pred: float, gt: float) -> float:
    """Mean relative accuracy over the 10 thresholds 0.50..0.95."""
    if gt == 0:
        return float(pred == 0)
    return float((abs(pred - gt) / abs(gt) <= 1 - THRESHOLDS).mean())


def _first_word(text: str) -> str:
    """The official `fuzzy_matching`: the first word, without a trailing period."""
    return text.strip().split(" ")[0].rstrip(".").strip() if text and text.strip() else ""


def score(item: EvalItem, response: str) -> dict[str, Any]:
    text = response or ""
    boxed = extract_answer(text) if ("\\boxed" in text or "<answer>" in text) else None
    candidate = boxed if boxed is not None else _first_word(text)
    if item.meta.get("question_type") in NUMERIC:
        x = parse_number(candidate)
        gt = float(item.answer)
        s = mra(x, gt) if x is not None else 0.0
        return {"extracted": x, "correct": s == 1.0, "score": s}
    m = re.match(r"\(?([A-Z])\)?", candidate.strip()) if candidate else None
    letter = m.group(1) if m else None
    ok = letter is not None and letter.lower() == item.answer.strip().lower()[:1]
    return {"extracted": letter, "correct": ok, "score": float(ok)}


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
