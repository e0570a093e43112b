"""`stage=build`: write train/val shards from the embedded generators or from a user's files.

Sources:
- `data=synthetic`: the embedded generators (`tasks.py`), `train_per_task` and `val_per_task`
  samples per task, seeded by the run's seed.
- `data=jsonl`: the importer turns JSONL or parquet rows into the same shards. A row is either in
  the m2r schema (`id, task, images, question, choices, answer, answer_type, cot, ...`, images as
  paths, raw bytes or `{"bytes": ..., "path": ...}` structs as Hugging Face parquet stores them) or
  LLaVA-style (`id, image, conversations: [{from: human, value}, {from: gpt, value}]`), where the
  answer is the row's `answer` or, failing that, the `<answer>`/`\\boxed{}` of the gpt turn.
- `data=shards`: nothing to build; the manifest under `data.root` is checked.

Every sample is validated on the way in. `data.on_bad_sample=raise` stops at the first bad row
with an error naming the file, row, id, field and fix; `skip` drops it, counts it, logs it, and
lists it in the manifest's `skipped`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Iterator

from m2r.config import DataConfig
from m2r.data.schema import ANSWER_TYPES, BadSampleError, Sample, validate_sample
from m2r.data.shards import SplitWriter, image_bytes, read_manifest
from m2r.progress import progress

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "rl", "test")  # test: the held-out set the recipe evaluates before and after RL


def _check_policy(cfg: DataConfig) -> None:
    if cfg.on_bad_sample not in ("raise", "skip"):
        raise ValueError(f"data.on_bad_sample={cfg.on_bad_sample!r} is not valid; use raise or skip")


def _build_key(cfg: DataConfig, seed: int) -> str:
    fields = {k: getattr(cfg, k) for k in ("source", "train_files", "val_files", "rl_files", "test_files", "image_root", "format", "tasks", "train_per_task", "val_per_task", "rl_per_task", "test_per_task", "noisy_trace_ratio", "mc_ratio", "image_size", "samples_per_shard", "on_bad_sample")}
    fields["source"] = str(getattr(cfg.source, "value", cfg.source))
    fields = {k: (list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig" else v) for k, v in fields.items()}
    return hashlib.sha256(json.dumps({"data": fields, "seed": seed}, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_data(cfg: DataConfig, out_root: str | Path, seed: int, force: bool = False) -> Path:
    """Build (or find) the shards; returns the shard root. Skips work whose manifest already matches."""
    _check_policy(cfg)
    source = str(getattr(cfg.source, "value", cfg.source))
    if source == "shards":
        if not cfg.root:
            raise ValueError("data=shards needs data.root=<folder with train/manifest.json>; build one with stage=build")
        read_manifest(cfg.root, "train")
        return Path(cfg.root)
    root = Path(cfg.root or out_root)
    key = _build_key(cfg, seed)
    if not force and all((root / s / "manifest.json").exists() for s in SPLITS):
        if all(read_manifest(root, s).get("build_key") == key for s in SPLITS):
            log.info("shards in %s are up to date (build key %s); skipping build", root, key)
            return root
        log.info("shards in %s were built from another config; rebuilding", root)
    if source == "synthetic":
        _build_synthetic(cfg, root, seed, key)
    elif source == "jsonl":
        _build_import(cfg, root, key)
    else:
        raise ValueError(f"data.source={source!r} is not one of synthetic, shards, jsonl")
    return root


# ------------------------------------------------------------------------------------------------
# Embedded data


def _gen_one(args: tuple) -> tuple[dict, list[bytes]]:
    from m2r.data.tasks import generate

    task, i, seed, split, size, mc, noise = args
    sample, images = generate(task, i, seed, split, size, mc)
    if noise > 0 and sample.cot:
        rng = random.Random(f"{seed}/noise/{sample.id}")
        if rng.random() < noise:
            kind = rng.choice(TRACE_NOISE)
            sample.cot = corrupt_trace(sample.cot, sample, kind)
            sample.meta["trace_noise"] = kind
    return sample.to_dict(), [image_bytes(im) for im in images]


# Raw reasoning traces from a model are not all good (paper section 2.1.1); the embedded data
# injects these four failures into a share of the SFT traces (`data.noisy_trace_ratio`) so the
# quality filter has something to find, and the report can say how much of it it found.
TRACE_NOISE = ("wrong_answer", "no_tags", "repetition_loop", "no_verification")
_VERIFY_LINE = re.compile(r"^.*\b(verif|check|substitut|confirm|again|consistent|plug).*$\n?", re.I | re.M)


def corrupt_trace(cot: str, sample: Sample, kind: str) -> str:
    """`cot` with one failure of `kind` (TRACE_NOISE) written into it."""
    think = re.search(r"<think>(.*?)</think>", cot, re.S)
    body = think.group(1).strip() if think else cot
    if kind == "wrong_answer":
        if sample.answer_type == "choice":
            wrong = next(c for c in "ABCDEFGH" if c != sample.answer.strip().upper())
        else:
            try:
                wrong = f"{float(sample.answer) * 2 + 1:g}"
            except ValueError:
                wrong = f"not {sample.answer}"
        return f"<think>\n{body}\n</think>\n<answer>\nThe answer is {wrong}. \\boxed{{{wrong}}}\n</answer>"
    if kind == "no_tags":
        return re.sub(r"</?(think|answer)>", "", cot).strip()
    if kind == "repetition_loop":  # stuck on its first step until the budget ran out: no answer
        first = next(line for line in body.splitlines() if line.strip())
        return "<think>\n" + "\n".join([first] * 12)
    if kind == "no_verification":
        return cot.replace(body, _VERIFY_LINE.sub("", body).strip())
    raise ValueError(f"unknown trace noise {kind!r}; one of {TRACE_NOISE}")


def _build_synthetic(cfg: DataConfig, root: Path, seed: int, key: str) -> None:
    from m2r.data.tasks import TASKS

    tasks = list(cfg.tasks) or list(TASKS)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"data.tasks has unknown task(s) {unknown}; the embedded tasks are {list(TASKS)}")
    for split, n in (("train", cfg.train_per_task), ("val", cfg.val_per_task), ("rl", cfg.rl_per_task), ("test", cfg.test_per_task)):
        writer = SplitWriter(root, split, cfg.samples_per_shard)
        noise = cfg.noisy_trace_ratio if split == "train" else 0.0
        jobs = [(t, i, seed, split, cfg.image_size, cfg.mc_ratio, noise) for t in tasks for i in range(n)]
        with progress() as bar:
            bar_id = bar.add_task(f"build {split}", total=len(jobs))
            for args in jobs:
                d, imgs = _gen_one(args)
                sample = Sample.from_dict(d)
                validate_sample(sample, imgs, where=f"generator {sample.task}", require_cot=split != "rl")
                writer.write(sample, imgs)
                bar.advance(bar_id)
        m = writer.close({"source": "synthetic", "build_key": key, "seed": seed})
        log.info("wrote %d %s samples in %d tasks to %s", m["count"], split, len(m["tasks"]), root / split)


# ------------------------------------------------------------------------------------------------
# Importer


def _rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs; a row that cannot be parsed comes back as an exception."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path} row {i}", row
        return
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path} line {lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path} line {lineno}", BadSampleError(f"{path} line {lineno}", None, "<row>", f"not valid JSON ({e.msg} at column {e.colno})", "fix the line so it is one JSON object, or remove it")


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)


def _answer_from_response(text: str) -> str | None:
    m = _ANSWER.findall(text)
    inner = m[-1] if m else text
    b = _BOXED.findall(inner)
    if b:
        return b[-1].strip()
    return m[-1].strip() if m else None


def _infer_answer_type(answer: str, choices: list) -> str:
    """choice (options given), number (`3`, `1,234.5`), expression (math: digits or LaTeX with an
    operator, `1/2`, `x^2+1`, `\\frac{1}{2}`, `\\sqrt{3}`), else text (`yes`, `left`)."""
    if choices:
        return "choice"
    a = str(answer).strip()
    try:
        float(a.replace(",", ""))
        return "number"
    except ValueError:
        pass
    if re.search(r"\\[a-zA-Z]+|[\^_=/*+]|\d\s*[a-zA-Z]\b|^-?[a-zA-Z]$|\(|-\s*\d", a) and not re.search(r"[a-zA-Z]{3,}", re.sub(r"\\[a-zA-Z]+", "", a)):
        return "expression"  # math, not words (a word of 3+ letters outside LaTeX commands makes it text)
    return "text"


def _load_image(ref: Any, base: Path, where: str, sid: str | None) -> tuple[bytes, str]:
    """Image bytes and a file extension from a path, raw bytes or an HF image struct."""
    if isinstance(ref, dict):
        if ref.get("bytes"):
            return bytes(ref["bytes"]), _ext(bytes(ref["bytes"]))
        ref = ref.get("path")
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref), _ext(bytes(ref))
    if not isinstance(ref, str) or not ref:
        raise BadSampleError(where, sid, "images", f"image reference {ref!r} is neither a path nor bytes", "give image paths (relative to data.image_root) or image bytes")
    p = Path(ref) if os.path.isabs(ref) else base / ref
    if not p.exists():
        raise BadSampleError(where, sid, "images", f"image file {p} does not exist", "fix the path, or set data.image_root to the folder the relative paths start from")
    data = p.read_bytes()
    return data, _ext(data, p.suffix.lstrip(".").lower())


def _ext(data: bytes, fallback: str = "png") -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return fallback if fallback in ("png", "jpg", "jpeg", "webp") else "png"


def row_to_sample(row: dict, where: str, base: Path, fmt: str = "auto") -> tuple[Sample, list[bytes]]:
    """One imported row -> (Sample, image bytes). Raises BadSampleError naming the field."""
    if not isinstance(row, dict):
        raise BadSampleError(where, None, "<row>", f"row is a {type(row).__name__}, not a JSON object", "write one JSON object per line")
    sid = row.get("id")
    sid = str(sid) if sid is not None else None
    if sid is None:
        raise BadSampleError(where, None, "id", "missing", "give every row a unique 'id' (letters, digits, '_' or '-')")
    llava = fmt == "llava" or (fmt == "auto" and "conversations" in row)
    if llava:
        convs = row.get("conversations") or []
        human = next((c.get("value", "") for c in convs if c.get("from") in ("human", "user")), None)
        gpt = next((c.get("value", "") for c in convs if c.get("from") in ("gpt", "assistant")), None)
        if human is None:
            raise BadSampleError(where, sid, "conversations", "no human turn", "add a {'from': 'human', 'value': ...} turn")
        refs = row.get("image") or row.get("images") or []
        refs = [refs] if isinstance(refs, (str, dict, bytes)) else list(refs)
        question = re.sub(r"\s*<image>\s*", " ", human).strip()
        answer = row.get("answer")
        if answer is None and gpt:
            answer = _answer_from_response(gpt)
        cot = gpt
        choices = list(row.get("choices") or [])
        task = row.get("task") or "imported"
    else:
        refs = row.get("images") or []
        refs = [refs] if isinstance(refs, (str, dict, bytes)) else list(refs)
        question, answer, cot = row.get("question"), row.get("answer"), row.get("cot")
        choices = list(row.get("choices") or [])
        task = row.get("task") or "imported"
    if answer is None or not str(answer).strip():
        raise BadSampleError(where, sid, "answer", "missing", "add an 'answer' field, or an <answer>...\\boxed{...}</answer> in the assistant turn")
    answer = str(answer).strip()
    answer_type = row.get("answer_type") or _infer_answer_type(answer, choices)
    if answer_type not in ANSWER_TYPES:
        raise BadSampleError(where, sid, "answer_type", f"unknown answer_type {answer_type!r}", f"use one of {', '.join(ANSWER_TYPES)}")
    images, names = [], []
    for k, ref in enumerate(refs):
        data, ext = _load_image(ref, base, where, sid)
        images.append(data)
        names.append(f"img{k}.{ext}")
    sample = Sample(
        id=sid, task=str(task), question=str(question or ""), answer=answer, answer_type=answer_type, images=names, choices=[str(c) for c in choices],
        cot=cot, quality=row.get("quality"), difficulty=row.get("difficulty"), source=row.get("source") or str(where.rsplit(" ", 2)[0]), meta=row.get("meta") or {},
    )
    validate_sample(sample, images, where)
    return sample, images


def _build_import(cfg: DataConfig, root: Path, key: str) -> None:
    if not cfg.train_files:
        raise ValueError("data=jsonl needs data.train_files=[a.jsonl,...] (JSONL or parquet); data.val_files is optional")
    files = {"train": list(cfg.train_files), "val": list(cfg.val_files), "rl": list(cfg.rl_files), "test": list(cfg.test_files)}
    seen: set[str] = set()
    for split in SPLITS:
        writer = SplitWriter(root, split, cfg.samples_per_shard)
        for f in files[split]:
            path = Path(os.path.expanduser(f))
            if not path.exists():
                raise FileNotFoundError(f"data.{split}_files: {path} does not exist")
            base = Path(cfg.image_root) if cfg.image_root else path.parent
            for where, row in progress_iter(_rows(path), f"import {path.name}"):
                try:
                    if isinstance(row, Exception):
                        raise row
                    sample, images = row_to_sample(row, where, base, cfg.format)
                    if sample.id in seen:
                        raise BadSampleError(where, sample.id, "id", "duplicate id", "make ids unique across all imported files")
                    seen.add(sample.id)
                except BadSampleError as e:
                    if cfg.on_bad_sample == "raise":
                        writer.abort()
                        raise
                    log.warning("skipping bad sample: %s", e)
                    writer.skip(e.where, str(e))
                    continue
                writer.write(sample, images)
        m = writer.close({"source": "import", "files": files[split], "build_key": key})
        if m["skipped"]:
            log.warning("%s: skipped %d bad sample(s) (listed in %s/manifest.json)", split, len(m["skipped"]), root / split)
        if split == "train" and m["count"] == 0:
            raise ValueError(f"no valid training samples in {files['train']} ({len(m['skipped'])} skipped)")


def progress_iter(it, description: str):
    with progress() as bar:
        task = bar.add_task(description, total=None)
        for x in it:
            yield x
            bar.advance(task)
