"""What every benchmark loader shares: the `EvalItem` row, reading rows from a benchmark's own
JSON/JSONL or Hugging Face parquet files, and image references (paths or bytes) opened lazily."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from m2r.data.media import Video


@dataclass
class EvalItem:
    """One benchmark row: identifying fields, the prompt parts, the images and the ground truth."""

    key: dict[str, Any]  # the row's identifying fields, as in the benchmark file (MATH-V: id)
    question: str
    options: list[str]
    answer: str
    images: list[Any] = field(default_factory=list)  # Path | bytes | PIL image | Video | a video reference; opened by `open_media`
    meta: dict[str, Any] = field(default_factory=dict)

    def open_media(self) -> list:
        """The row's media for the model: images (PIL) and videos (`Video`, given to the processor's video path), in order."""
        out: list = []
        for r in self.images:
            if hasattr(r, "video"):  # a video reference (VSI-Bench): its sampled frames, as a video
                out.append(r.video())
            elif isinstance(r, (Image.Image, Video)):  # already decoded (the embedded shards)
                out.append(r.convert("RGB") if isinstance(r, Image.Image) else r)
            else:
                out.append(Image.open(io.BytesIO(r) if isinstance(r, bytes) else r).convert("RGB"))
        return out

    def open_images(self) -> list[Image.Image]:
        """The row's media as still images: a video's sampled frames one after another."""
        return [f for m in self.open_media() for f in (m.frames if isinstance(m, Video) else [m])]


def read_rows(root: str | Path, split: str, benchmark: str) -> list[dict]:
    """Rows of `<root>/<split>.jsonl`, `<root>/<split>.json` (a list, or a dict keyed by id), or
    `<root>/**/<split>*.parquet` (the Hugging Face release), in that order of preference."""
    root = Path(root)
    jsonl, js = root / f"{split}.jsonl", root / f"{split}.json"
    if jsonl.exists():
        return [json.loads(l) for l in jsonl.read_text(encoding="utf-8").splitlines() if l.strip()]
    if js.exists():
        data = json.loads(js.read_text(encoding="utf-8"))
        return list(data.values()) if isinstance(data, dict) else data
    parquets = sorted(root.glob(f"**/{split}*.parquet"))
    if parquets:
        import pyarrow.parquet as pq

        return [r for p in parquets for r in pq.read_table(p).to_pylist()]
    raise FileNotFoundError(f"benchmark.root={root} has no {split}.jsonl, {split}.json or {split}*.parquet; point it at the {benchmark} data folder")


def image_ref(value: Any, root: Path, fallback_path: str | None = None) -> Path | bytes:
    """An image as stored by the benchmark: a HF `{"bytes", "path"}` struct, raw bytes, or a path relative to root."""
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    path = value.get("path") if isinstance(value, dict) else value
    path = path or fallback_path
    if not path:
        raise ValueError(f"a row under {root} has no image (neither bytes nor a path)")
    return root / path
