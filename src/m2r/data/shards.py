"""WebDataset shards: writing, the manifest, and streaming them back.

Layout (DESIGN.md section 3): `root/<split>/<task slug>/<task slug>-%06d.tar` and
`root/<split>/manifest.json`, which lists per task its shards in order with sample counts and
each shard's difficulty range. In a tar, sample `<id>` is `<id>.json` plus one member
`<id>.<name>` per entry of its `images` list (e.g. `<id>.img0.png`) and per frame of its
`videos` (e.g. `<id>.vid0_f000.png`).

Departure from DESIGN.md: the task folder and file prefix use the task's slug (`spatial_count`)
rather than the task name itself, because a task name holds a `/`.
"""

from __future__ import annotations

import io
import itertools
import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import webdataset as wds
from PIL import Image

from m2r.data.schema import Sample, task_slug

MANIFEST_VERSION = 1


class ShardError(FileNotFoundError):
    pass


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


class SplitWriter:
    """Writes the samples of one split, task by task, into numbered shards, and its manifest."""

    def __init__(self, root: str | Path, split: str, samples_per_shard: int):
        # Written into a hidden sibling and renamed into place by `close`, so that a killed or failed
        # build never leaves a torn split behind a manifest (an earlier one, or its own).
        self.final = Path(root) / split
        self.dir = Path(root) / f".{split}.partial"
        if self.dir.exists():
            shutil.rmtree(self.dir)  # what a killed build left
        self.split, self.per_shard = split, samples_per_shard
        self.tasks: dict[str, dict[str, Any]] = {}
        self._open: dict[str, tuple[wds.TarWriter, dict]] = {}
        self.skipped: list[dict[str, Any]] = []
        self.without_cot = 0  # samples SFT cannot train or validate on (held-out and RL rows need no trace)

    def _shard(self, task: str) -> tuple[wds.TarWriter, dict]:
        entry = self.tasks.setdefault(task, {"count": 0, "shards": []})
        cur = self._open.get(task)
        if cur is not None and cur[1]["count"] < self.per_shard:
            return cur
        if cur is not None:
            cur[0].close()
        slug = task_slug(task)
        rel = f"{slug}/{slug}-{len(entry['shards']):06d}.tar"
        (self.dir / slug).mkdir(parents=True, exist_ok=True)
        info = {"path": rel, "count": 0, "difficulty": None}
        entry["shards"].append(info)
        writer = wds.TarWriter(str(self.dir / rel), encoder=False)
        self._open[task] = (writer, info)
        return writer, info

    def write(self, sample: Sample, images: list[bytes]) -> None:
        writer, info = self._shard(sample.task)
        record = {"__key__": sample.id, "json": json.dumps(sample.to_dict()).encode()}
        for name, data in zip(sample.members(), images):
            record[name] = data
        writer.write(record)
        info["count"] += 1
        self.tasks[sample.task]["count"] += 1
        self.without_cot += not (sample.cot and sample.cot.strip())
        if sample.difficulty is not None:
            lo, hi = info["difficulty"] or (sample.difficulty, sample.difficulty)
            info["difficulty"] = [min(lo, sample.difficulty), max(hi, sample.difficulty)]

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append({"where": where, "reason": reason})

    def abort(self) -> None:
        """Close open shards and drop them: whatever split was in place stays as it was."""
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self, extra: dict[str, Any] | None = None, sidecars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the manifest (and `sidecars`, name -> JSON), then move the split into place."""
        for writer, _ in self._open.values():
            writer.close()
        self._open.clear()
        manifest = {
            "version": MANIFEST_VERSION,
            "split": self.split,
            "count": sum(t["count"] for t in self.tasks.values()),
            "tasks": self.tasks,
            "skipped": self.skipped,
            "without_cot": self.without_cot,
            **(extra or {}),
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, content in (sidecars or {}).items():
            (self.dir / name).write_text(json.dumps(content))
        (self.dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
        old = self.final.parent / f".{self.split}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.final.exists():
            self.final.rename(old)  # a crash from here to the next rename leaves no split: rebuilt, never torn
        self.dir.rename(self.final)
        shutil.rmtree(old, ignore_errors=True)
        return manifest


def read_manifest(root: str | Path, split: str) -> dict[str, Any]:
    path = Path(root) / split / "manifest.json"
    if not path.exists():
        raise ShardError(
            f"data.root={root} has no {split}/manifest.json; run stage=build first, or point data.root at a folder "
            f"of m2r shards (<root>/{split}/manifest.json), or import your data with data=jsonl data.train_files=[...]"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("version") != MANIFEST_VERSION:
        raise ShardError(f"{path} has manifest version {manifest.get('version')}, this m2r reads version {MANIFEST_VERSION}; rebuild the shards")
    return manifest


def shard_urls(root: str | Path, split: str, tasks: Iterable[str] | None = None) -> list[str]:
    """Shard paths of a split, task by task in manifest order."""
    manifest = read_manifest(root, split)
    wanted = list(manifest["tasks"]) if tasks is None else list(tasks)
    missing = [t for t in wanted if t not in manifest["tasks"]]
    if missing:
        raise ShardError(f"{root}/{split} has no shards for task(s) {missing}; it has {list(manifest['tasks'])}")
    return [str(Path(root) / split / s["path"]) for t in wanted for s in manifest["tasks"][t]["shards"]]


def _rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def decode(record: dict[str, Any]) -> tuple[Sample, list]:
    """A raw tar record -> (Sample, media): RGB images in `images` order, then one `Video` per video."""
    from m2r.data.media import Video

    sample = Sample.from_dict(json.loads(record["json"]))
    media: list = [_rgb(record[name]) for name in sample.images]
    for i, v in enumerate(sample.videos):
        media.append(Video([_rgb(record[name]) for name in v["frames"]], sample.video_fps(i), v.get("timestamps")))
    return sample, media


def _worker() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def resume_role(wid: int, nworkers: int, skip_batches: int) -> tuple[int, int]:
    """(worker whose stream worker `wid` replays, batches of that stream to skip) after `skip_batches`.

    A DataLoader takes batch i from worker i % nworkers, and a fresh DataLoader starts at worker
    0. So after `skip_batches` batches, new worker `wid` must continue original worker
    (skip_batches + wid) % nworkers, which had then given (skip_batches + wid) // nworkers batches.
    """
    return (skip_batches + wid) % nworkers, (skip_batches + wid) // nworkers


def rank_shards(urls: list[str], rank: int, world: int) -> list[str]:
    """Shard i goes to rank i % world, order preserved."""
    return urls[rank::world]


def shard_source(
    urls: list[str], rank: int, world: int, seed: int, shuffle: bool, repeat: bool, skip_batches: int = 0
) -> Callable[[], Iterator[dict]]:
    """First pipeline stage: this rank's and this worker's shards, epoch after epoch when `repeat`.

    With `shuffle`, every epoch permutes the full shard list with the same seed on every rank
    before splitting, so ranks stay disjoint within an epoch. With `skip_batches`, a worker reads
    the shards of the worker it replays (`resume_role`).
    """

    def source() -> Iterator[dict]:
        wid, nworkers = _worker()
        wid = resume_role(wid, nworkers, skip_batches)[0]
        epoch = 0
        while True:
            order = list(urls)
            if shuffle:
                random.Random(seed * 100003 + epoch).shuffle(order)
            mine = rank_shards(order, rank, world)[wid::nworkers]
            if not mine:
                return
            for url in mine:
                yield {"url": url}
            epoch += 1
            if not repeat:
                return

    return source


def _skip_records(skip_batches: int, batch_size: int) -> Callable[[Iterator[dict]], Iterator[dict]]:
    """Pipeline stage that drops this worker's share of the first `skip_batches` batches (raw records)."""

    def stage(src: Iterator[dict]) -> Iterator[dict]:
        wid, nworkers = _worker()  # read in the worker, when iteration starts
        return itertools.islice(src, resume_role(wid, nworkers, skip_batches)[1] * batch_size, None)

    return stage


def sample_stream(
    urls: list[str],
    rank: int = 0,
    world: int = 1,
    seed: int = 0,
    shuffle_shards: bool = True,
    shuffle_buffer: int = 0,
    repeat: bool = False,
    epoch_size: int | None = None,
    skip_batches: int = 0,
    batch_size: int = 1,
) -> wds.DataPipeline:
    """An iterable of decoded (Sample, images) for this rank; `epoch_size` caps samples per worker.

    `skip_batches` resumes the stream: a DataLoader with `batch_size` over it (any number of
    workers) yields what batches skip_batches, skip_batches + 1, ... of the unskipped stream were.
    Every random choice is seeded (shard order by seed and epoch, the shuffle buffer by seed and
    rank), so the stream is the same in every process and the skipped records are replayed
    through the shuffle buffer but never decoded.
    """
    stages: list[Any] = [shard_source(urls, rank, world, seed, shuffle_shards, repeat, skip_batches), wds.tarfile_to_samples()]
    if shuffle_buffer > 1:
        stages.append(wds.shuffle(shuffle_buffer, initial=min(shuffle_buffer, 64), seed=seed * 1009 + rank))
    if skip_batches:
        stages.append(_skip_records(skip_batches, batch_size))
    stages.append(wds.map(decode))
    pipe = wds.DataPipeline(*stages)
    if epoch_size is not None:
        pipe = pipe.with_epoch(epoch_size)
    return pipe
