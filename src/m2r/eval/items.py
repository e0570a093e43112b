"""What every benchmark loader shares: the `EvalItem` row, reading rows from a benchmark's own
JSON/JSONL or Hugging Face parquet files, and image references (paths or bytes) opened lazily."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image


@dataclass
class EvalItem:
    """One benchmark row: identifying fields, the prompt parts, the images and the ground truth."""

    key: dict[str, Any]  # the row's identifying fields, as in the benchmark file (MATH-V: id)
    question: str
    options: list[str]
    answer: str
    images: list[Any] = field(default_factory=list)  # Path | bytes | PIL image | a video reference; opened by `open_images`
    meta: dict[str, Any] = field(default_factory=dict)

    def open_media(self) -> list:
        """The row's media for the model: images (PIL) and videos (`m2r.data.media.Video`, through the processor's video
        path), in order."""
        out: list = []
        for r in self.images:
            if hasattr(r, "video"):  # a video reference: its sampled frames, as a video
                out.append(r.video())
            elif type(r).__name__ == "Video":  # already a Video (the embedded shards)
                out.append(r)
            else:
                out.extend(self._open([r]))
        return out

    def _open(self, refs: list) -> list[Image.Image]:
        return [r.convert("RGB") if isinstance(r, Image.Image) else Image.open(io.BytesIO(r) if isinstance(r, bytes) else r).convert("RGB") for r in refs]

    def open_images(self) -> list[Image.Image]:
        out: list[Image.Image] = []
        for r in self.images:
            if hasattr(r, "frames"):  # a video: uniformly sampled frames
                out.extend(r.frames() if callable(r.frames) else r.frames)
            elif isinstance(r, Image.Image):  # already decoded (the embedded shards)
                out.append(r.convert("RGB"))
            else:
                out.append(Image.open(io.BytesIO(r) if isinstance(r, bytes) else r).convert("RGB"))
        return out


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
