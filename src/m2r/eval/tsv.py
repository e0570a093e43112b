"""VLMEvalKit TSV files (e.g. `MathVista_MINI.tsv`, `MathVision_MINI.tsv`, `LogicVista.tsv`,
`CV-Bench.tsv`): one row per question, images inline as base64.

Columns read: `index` (the row key; prediction files name it), `image` (base64, or a JSON list of
base64 strings for several images) or `image_path`, `question`, option columns `A`..`Z` (the
non-empty ones, in order), `answer`; every other column goes to the item's `meta` with the
names used by the benchmark's own files where VLMEvalKit keeps them (`question_type`,
`answer_type`, `precision`, `category`, `task`, `source`, `question_type`, ...). The scorer of the
named benchmark then applies. `benchmark.format=tsv` selects this reader.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import sys
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem

OPTION_COLUMNS = [chr(65 + i) for i in range(26)]


def _images(row: dict[str, str], root: Path, where: str) -> list[Path | bytes]:
    raw = (row.get("image") or "").strip()
    if raw:
        values = json.loads(raw) if raw.startswith("[") else [raw]
        try:
            return [base64.b64decode(v, validate=True) for v in values]
        except (binascii.Error, ValueError) as e:
            raise ValueError(f"{where}: column 'image' is not base64 ({e}); VLMEvalKit TSVs hold base64-encoded images") from e
    if row.get("image_path"):
        paths = json.loads(row["image_path"]) if row["image_path"].startswith("[") else [row["image_path"]]
        return [root / p for p in paths]
    return []


def load(path: str | Path, split: str | None = None) -> list[EvalItem]:
    """Items from a TSV file (or the single / `<split>` TSV in a folder)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob(f"{split}*.tsv" if split else "*.tsv")) or sorted(path.glob("*.tsv"))
        if len(files) != 1:
            raise FileNotFoundError(f"benchmark.root={path} should hold exactly one TSV{' for ' + split if split else ''} (found {[f.name for f in files]}); point it at the file")
        path = files[0]
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # base64 images are long fields
    items = []
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.DictReader(f, delimiter="\t"), 2):
            where = f"{path} line {lineno}"
            if "index" not in row or "question" not in row or "answer" not in row:
                raise ValueError(f"{where}: a VLMEvalKit TSV needs the columns index, question, answer (and image); found {sorted(row)}")
            options = [row[c] for c in OPTION_COLUMNS if c in row and row[c] not in (None, "", "nan")]
            meta: dict[str, Any] = {k: v for k, v in row.items() if k not in {"index", "image", "image_path", "question", "answer", *OPTION_COLUMNS}}
            if meta.get("precision"):
                try:
                    meta["precision"] = float(meta["precision"])
                except ValueError:
                    pass
            meta.setdefault("subject", meta.get("category") or meta.get("task") or "all")
            items.append(EvalItem(key={"index": row["index"]}, question=row["question"], options=options, answer=row["answer"].strip(), images=_images(row, path.parent, where), meta=meta))
    return items
