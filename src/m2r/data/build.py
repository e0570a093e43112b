"""`stage=build`: write train/val shards from the embedded generators or from a user's files.

Sources:
- `data=synthetic`: the embedded generators (`tasks.py`), `train_per_task` and `val_per_task`
  samples per task, seeded by the run's seed.
- `data=jsonl`: the importer (`importer.py`) turns JSONL, JSON-array or parquet files (LLaVA /
  ShareGPT conversations included, plain VQA rows with a bare answer too) into the same shards.
- `data=shards`: nothing to build; the manifest under `data.root` is checked.

A build is keyed by its config, the seed, and for imported data the size and mtime of every data
and image file it read, and each split is written beside the old one and renamed into place when
complete: a fixed row or image rebuilds, and a killed build is never taken for a finished one.

Every sample is validated on the way in. `data.on_bad_sample=raise` stops at the first bad row
with an error naming the file, row, id, field and fix; `skip` drops it, counts it, logs it, and
lists it in the manifest's `skipped`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from pathlib import Path

from m2r.config import DataConfig
from m2r.data.importer import data_files, read_rows, row_to_sample
from m2r.data.schema import BadSampleError, Sample, validate_sample
from m2r.data.shards import SplitWriter, image_bytes, read_manifest
from m2r.progress import progress

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "rl", "test")  # test: the held-out set the recipe evaluates before and after RL


def _check_policy(cfg: DataConfig) -> None:
    if cfg.on_bad_sample not in ("raise", "skip"):
        raise ValueError(f"data.on_bad_sample={cfg.on_bad_sample!r} is not valid; use raise or skip")
    if cfg.llava_target not in ("wrap", "keep"):
        raise ValueError(f"data.llava_target={cfg.llava_target!r} is not valid; use wrap (the assistant turn in the M2 format) or keep")
    if cfg.format not in ("auto", "m2", "llava"):
        raise ValueError(f"data.format={cfg.format!r} is not valid; use auto, m2 or llava")
    if str(getattr(cfg.source, "value", cfg.source)) == "jsonl" and not cfg.train_files:
        raise ValueError("data=jsonl needs data.train_files=[a.jsonl,...] (JSONL, a JSON array, parquet, or a folder of them); data.val_files is optional")


def build_key(cfg: DataConfig, seed: int) -> str:
    """What the shards are made from (the data config, the seed, and for imports the source files' stamps)."""
    fields = {k: getattr(cfg, k) for k in ("source", "train_files", "val_files", "rl_files", "test_files", "image_root", "format", "tasks", "train_per_task", "val_per_task", "rl_per_task", "test_per_task", "noisy_trace_ratio", "mc_ratio", "image_size", "num_frames", "video_fps", "video_frame_size", "samples_per_shard", "on_bad_sample",
                                        "llava_target", "max_question_chars", "max_answer_chars", "max_cot_chars", "max_image_pixels")}
    fields["source"] = str(getattr(cfg.source, "value", cfg.source))
    if fields["source"] == "synthetic":  # the generators' version too: a changed renderer rebuilds
        from m2r.data import tasks

        fields["generators"] = tasks.EMBEDDED_VERSION
    if fields["source"] == "jsonl":  # the contents too: fixing a row and re-running rebuilds
        fields["stamps"] = {s: [_stamp(p) for p in data_files(list(getattr(cfg, f"{s}_files")), f"{s}_files")] for s in SPLITS}
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
    key = build_key(cfg, seed)
    if not force and all((root / s / "manifest.json").exists() for s in SPLITS):
        if all(read_manifest(root, s).get("build_key") == key and _inputs_unchanged(root / s) for s in SPLITS):
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


def media_bytes(media: list) -> list[bytes]:
    """PNG bytes of a sample's media members, in `Sample.members()` order (images, then frames)."""
    from m2r.data.media import split_media

    images, videos = split_media(media)
    return [image_bytes(im) for im in images] + [image_bytes(f) for v in videos for f in v.frames]


def _gen_one(args: tuple) -> tuple[dict, list[bytes]]:
    from m2r.data.tasks import generate

    task, i, seed, split, size, mc, noise, frames, frame_size = args
    sample, media = generate(task, i, seed, split, size, mc, num_frames=frames, frame_size=frame_size)
    if noise > 0 and sample.cot:
        rng = random.Random(f"{seed}/noise/{sample.id}")
        if rng.random() < noise:
            kind = rng.choice(TRACE_NOISE)
            sample.cot = corrupt_trace(sample.cot, sample, kind)
            sample.meta["trace_noise"] = kind
    return sample.to_dict(), media_bytes(media)


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
    from m2r.data.tasks import all_tasks

    known = all_tasks()
    tasks = list(cfg.tasks) or list(known)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"data.tasks has unknown task(s) {unknown}; the embedded tasks are {list(known)}")
    if cfg.num_frames < 1 or cfg.video_frame_size < 28:
        raise ValueError(f"data.num_frames={cfg.num_frames}, data.video_frame_size={cfg.video_frame_size}: camera walks need at least 1 frame of at least 28 px")
    for split, n in (("train", cfg.train_per_task), ("val", cfg.val_per_task), ("rl", cfg.rl_per_task), ("test", cfg.test_per_task)):
        writer = SplitWriter(root, split, cfg.samples_per_shard)
        noise = cfg.noisy_trace_ratio if split == "train" else 0.0
        jobs = [(t, i, seed, split, cfg.image_size, cfg.mc_ratio, noise, cfg.num_frames, cfg.video_frame_size) for t in tasks for i in range(n)]
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
# Importer (row reading and validation in importer.py)


def _stamp(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _inputs_unchanged(split_dir: Path) -> bool:
    """Whether every image file an imported split read still has the size and mtime it had."""
    inputs = split_dir / "inputs.json"
    if not inputs.exists():
        return True
    for path, size, mtime in json.loads(inputs.read_text()):
        try:
            if _stamp(Path(path))[1:] != [size, mtime]:
                return False
        except OSError:
            return False
    return True


def _build_import(cfg: DataConfig, root: Path, key: str) -> None:
    files = {s: data_files(list(getattr(cfg, f"{s}_files")), f"{s}_files") for s in SPLITS}
    seen: set[str] = set()
    for split in SPLITS:
        writer = SplitWriter(root, split, cfg.samples_per_shard)
        read: dict[str, list] = {}
        try:
            for path in files[split]:
                for where, row in progress_iter(read_rows(path), f"import {path.name}"):
                    try:
                        if isinstance(row, Exception):
                            raise row
                        sample, images, image_files = row_to_sample(row, where, split, cfg)
                        validate_sample(sample, images, where)
                        if sample.id in seen:
                            raise BadSampleError(where, sample.id, "id", "duplicate id", "make ids unique across all imported files")
                    except BadSampleError as e:
                        if cfg.on_bad_sample == "raise":
                            raise
                        log.warning("skipping bad sample: %s", e)
                        writer.skip(e.where, str(e))
                        continue
                    seen.add(sample.id)
                    for f in image_files:
                        read.setdefault(str(f), _stamp(f))
                    writer.write(sample, images)
        except BaseException:
            writer.abort()
            raise
        m = writer.close({"source": "import", "files": [str(f) for f in files[split]], "build_key": key}, sidecars={"inputs.json": list(read.values())})
        if m["skipped"]:
            log.warning("%s: skipped %d bad sample(s) (listed in %s/manifest.json)", split, len(m["skipped"]), root / split)
        if files[split] and m["count"] == 0:
            raise ValueError(f"data.{split}_files {[str(f) for f in files[split]]} gave no valid samples ({len(m['skipped'])} skipped; the reasons are in "
                             f"{root / split}/manifest.json); fix the rows, or leave data.{split}_files empty")


def progress_iter(it, description: str):
    with progress() as bar:
        task = bar.add_task(description, total=None)
        for x in it:
            yield x
            bar.advance(task)
