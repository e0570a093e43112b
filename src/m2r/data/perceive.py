"""The perception warm-up's data: fresh simulator scenes whose trace lists every object, left to right.

A pretrained Qwen2.5-VL can already say what is where in an image; a model built from config (the tiny
default) cannot, and the recipe's SFT set (a few hundred scenes, each seen a handful of times) is too
small to teach it (benchmarks/README.md, "Scenes taken apart"). The `perceive` step trains it first on a
stream of scenes drawn fresh for every sample, each answered by one reading per object (and, for half of them,
the readings of the objects the question names, looked up in the listing: `perception_sample`):

    I see 2 objects, from left to right:
    1. The red cube is in column 1, row 3.
    2. The blue sphere is in column 3, row 2.

(columns and rows are thirds of the image: `GRID`), then the count in `\\boxed{}`. One reading per line is what
the tiny model learns to look from; reading one named object's place straight off the image is not (the probe's
scene-locate), so a named object is looked up in the listing instead.
The embedded spatial traces open with the same listing (`m2r.data.tasks`), so SFT builds on it.

Every sample is a pure function of (seed, rank, batch index, position in the batch): a resumed run
continues at its next unseen batch without replaying anything, and ranks never draw the same scene.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Iterator

import lightning as L
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from m2r.data.collate import M2_SYSTEM_PROMPT, SFTCollator
from m2r.data.scene import PALETTE, SHAPES, Scene, sample_scene
from m2r.data.schema import Sample

log = logging.getLogger(__name__)

QUESTION = "List the objects in the image from left to right, with the column and row of each."


GRID = 3  # columns and rows of the readings: thirds, so that each cell is whole image tokens (168 px: 2 x 2 of the 6 x 6)


def cell(t: float, size: int, grid: int = GRID) -> int:
    """Which third (1-`grid`) of an image `size` px wide a pixel coordinate falls in: the readings' column and row.

    Thirds since EMBEDDED_VERSION 6 (quarters before): a quarter of the recipe's 168 px image is one and a half of its 28 px
    tokens, so a token straddled two cells; `benchmarks/perception_probe.py --cells` measures the difference."""
    return min(grid, max(1, int(t * grid // size) + 1))


def placed(scene: Scene) -> list[tuple[float, float, object]]:
    """(u, v, object) for every object of `scene`, left to right by the pixel column of its centre."""
    from m2r.data.tasks import _pixel  # the embedded tasks' projection of an object's centre

    return sorted(((*_pixel(scene, o), o) for o in scene.objects), key=lambda t: t[0])


def reading_line(name: str, column: int, row: int) -> str:
    """One object's reading: "The red cube is in column 1, row 3." (the listing's lines and the look-ups)."""
    return f"The {name} is in column {column}, row {row}."


def readings(scene: Scene) -> list[str]:
    """One reading per object, left to right: "The red cube is in column 1, row 3." (thirds of the image)."""
    size = scene.camera.image_size
    return [reading_line(o.name, cell(u, size), cell(v, size)) for u, v, o in placed(scene)]


def numbered(lines: list[str]) -> list[str]:
    """A listing's text from its readings: the count, then the readings numbered (`listing`)."""
    return [f"I see {len(lines)} object{'s' if len(lines) != 1 else ''}, from left to right:", *(f"{i}. {line}" for i, line in enumerate(lines, 1))]


def listing(scene: Scene) -> list[str]:
    """The listing a trace opens with: how many objects there are, then the readings, numbered:

        I see 2 objects, from left to right:
        1. The red cube is in column 1, row 3.
        2. The blue sphere is in column 3, row 2.

    The count comes first so that the list has a known end: without it the tiny model, once trained on the task
    traces, kept listing objects that are not there (benchmarks/README.md, "Free-written listings")."""
    return numbered(readings(scene))


def lookup(scene: Scene, names: list[str]) -> list[str]:
    """The readings of the named objects, in the order named: a line of the listing copied for each, as the scene
    tasks' traces restate the objects their question asks about."""
    read = dict(zip((o.name for _, _, o in placed(scene)), readings(scene)))
    return [read[n] for n in names]


LOCATE = " Then say where the {} {}."  # the warm-up draws it for half its samples (locate=0.5, a code default keyed by
# EMBEDDED_VERSION, not a config key: changing the default needs a version bump)


def perception_sample(rng: random.Random, image_size: int, objects: tuple[int, int], locate: float = 0.5) -> tuple[Sample, list[Image.Image]]:
    """A fresh scene of `objects` (lo, hi) objects and its listing trace; the answer is the count. With probability
    `locate` the question also names one or two of its objects (in random order) and the trace ends by looking each up
    in the listing: the copy from the question and the look-up that the scene tasks' traces make, which 500 SFT steps
    on a twentieth of the mix each did not teach (benchmarks/README.md, "Counting first, looking up the question's objects")."""
    scene, img = sample_scene(rng, image_size, n_objects=objects)
    n = len(scene.objects)
    lines = listing(scene)
    question = QUESTION
    if rng.random() < locate:
        names = [o.name for o in rng.sample(scene.objects, min(n, rng.choice((1, 2))))]
        question += LOCATE.format(" and the ".join(names), "are" if len(names) > 1 else "is")
        lines += lookup(scene, names)
    body = "\n".join(lines)
    things = f"{n} object{'s' if n != 1 else ''}"
    cot = f"<think>\n{body}\nLet me verify: I listed {things}.\n</think>\n<answer>\n{'There are' if n != 1 else 'There is'} {things}. \\boxed{{{n}}}\n</answer>"
    sample = Sample(id="", task="perceive/list", question=question, answer=str(n), answer_type="number", images=["img0.png"], cot=cot, meta=scene.to_meta())
    return sample, [img]


def check_objects(objects: tuple[int, int] | list[int]) -> tuple[int, int]:
    """`perceive.objects` as (lo, hi), or a ValueError that says what is wrong."""
    if len(objects) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in objects):
        raise ValueError(f"perceive.objects={list(objects)}: give two whole numbers [lo, hi], e.g. perceive.objects=[2,6]")
    lo, hi = objects
    most = len(PALETTE) * len(SHAPES)
    if not 1 <= lo <= hi or hi > 8:
        raise ValueError(f"perceive.objects={[lo, hi]}: give [lo, hi] with 1 <= lo <= hi <= 8 (a scene holds at most 8 objects that all stay "
                         f"visible; there are {most} colour and shape pairs)")
    return lo, hi


class PerceptionStream(IterableDataset):
    """An endless stream of perception samples for one rank, from batch `start_batch` on.

    Batch b of rank r holds samples (seed, r, b, 0..batch_size-1). With DataLoader workers, worker j of W
    makes batches start + j, start + j + W, ...: the DataLoader takes one batch from each worker in turn, so
    the batches arrive in order b = start, start + 1, ... whatever the number of workers. `locate` is the share of
    samples whose question also names objects to look up (`perception_sample`); the look test draws 0 (listings alone,
    whose every digit is read from the image, where a looked-up digit can be copied from the listing)."""

    def __init__(self, seed: int, rank: int, batch_size: int, image_size: int, objects: tuple[int, int], start_batch: int = 0,
                 split: str = "train", limit_batches: int | None = None, locate: float = 0.5):
        self.seed, self.rank, self.batch_size, self.image_size, self.locate = seed, rank, batch_size, image_size, locate
        self.objects, self.start_batch, self.split, self.limit_batches = check_objects(objects), start_batch, split, limit_batches

    def sample(self, batch: int, i: int) -> tuple[Sample, list[Image.Image]]:
        rng = random.Random(f"{self.seed}/perceive/{self.split}/{self.rank}/{batch}/{i}")
        try:
            sample, images = perception_sample(rng, self.image_size, self.objects, self.locate)
        except RuntimeError as e:
            raise RuntimeError(f"perceive: {e} (perceive.objects={list(self.objects)} at perceive.image_size={self.image_size} px: "
                               "lower the most objects or raise the image size)") from None
        sample.id = f"perceive-{self.split}-r{self.rank}-b{batch}-{i}"
        return sample, images

    def __iter__(self) -> Iterator[tuple[Sample, list[Image.Image]]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batch = self.start_batch + worker
        end = None if self.limit_batches is None else self.start_batch + self.limit_batches
        while end is None or batch < end:
            for i in range(self.batch_size):
                yield self.sample(batch, i)
            batch += workers


class PerceiveDataModule(L.LightningDataModule):
    """The `perceive` step's data: each rank's own endless stream of fresh scenes, and `val_samples` fixed held-out
    scenes (drawn with split "val", spread over the ranks) for `val/loss` and `val/token_acc`.

    Resume: the checkpoint holds how many training batches the loop has taken (counted as `SFTDataModule` counts
    them, once per batch trained on); the resumed stream starts at the next one."""

    def __init__(self, processor, seed: int = 0, batch_size: int = 8, image_size: int = 168, objects: tuple[int, int] = (2, 6),
                 val_samples: int = 64, max_length: int = 512, num_workers: int = 0, system_prompt: str | None = M2_SYSTEM_PROMPT):
        super().__init__()
        self.seed, self.batch_size, self.image_size, self.objects = seed, batch_size, image_size, check_objects(objects)
        self.val_samples, self.num_workers = val_samples, num_workers
        self.collator = SFTCollator(processor, max_length, system_prompt)
        self.train_batches = 0

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def _loader(self, stream: PerceptionStream) -> DataLoader:
        return DataLoader(stream, batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=self.collator)

    def train_dataloader(self) -> DataLoader:
        rank, _ = self._rank_world()
        if self.train_batches:
            log.info("resuming the perception stream of rank %d at batch %d", rank, self.train_batches)
        return self._loader(PerceptionStream(self.seed, rank, self.batch_size, self.image_size, self.objects, start_batch=self.train_batches))

    def val_dataloader(self) -> DataLoader | list:
        if self.val_samples <= 0:
            return []
        rank, world = self._rank_world()
        batches = math.ceil(self.val_samples / (world * self.batch_size))  # the same number on every rank: DDP never waits on one
        stream = PerceptionStream(self.seed, rank, self.batch_size, self.image_size, self.objects, split="val", limit_batches=batches)
        return DataLoader(stream, batch_size=self.batch_size, num_workers=0, collate_fn=self.collator)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training:  # once per batch the loop trains on (not prefetched, not validation)
            self.train_batches += 1
        return batch

    def state_dict(self) -> dict:
        return {"train_batches": self.train_batches}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train_batches = int(state_dict.get("train_batches", 0))


def reading_digits(labels, tokenizer):
    """Masks over label rows (batch, tokens) of the reading digits: (columns, rows), each a digit whose cue word is two
    tokens back ("column", " ", "3"), so a line's number, the count in \\boxed{} and any other digit are not readings,
    whatever the grid."""
    import torch

    ids = lambda words: torch.tensor(sorted({tokenizer(" " + w, add_special_tokens=False)["input_ids"][-1] for w in words}), device=labels.device)  # noqa: E731
    prev2 = torch.nn.functional.pad(labels, (2, 0), value=-100)[:, :-2]
    digit = torch.isin(labels, ids("123456789"))
    return digit & torch.isin(prev2, ids(["column"])), digit & torch.isin(prev2, ids(["row"]))


def reading_accuracy(model, processor, samples: list[tuple[Sample, list[Image.Image]]], batch_size: int = 16, max_length: int = 512) -> dict[str, float]:
    """The look test of a warmed-up model: teacher-forced, the share of reading digits (the C and R of every "column C,
    row R") whose greedy token is right, on `samples` as they are (`reading_acc`) and with each image moved one sample on
    (`reading_acc_swapped`), and the same for the columns and the rows alone (`reading_acc_column`, `_row`, each also
    `_swapped`). A model that reads its images falls towards the floor with swapped images; one that has only learnt the
    listing's priors (columns rise left to right, the middle row is the most common) does not.

    The same for the names: `naming_acc_colour` scores each object's colour word, `naming_acc_shape` its shape word
    (the one after a colour), each also `_swapped`, over `namings` objects; None where a colour or shape word is not one
    token of this tokenizer. A listing whose digits are right but whose names are not cannot say which object is where."""
    import torch

    tok = processor.tokenizer
    words = {kind: [tok(" " + w, add_special_tokens=False)["input_ids"] for w in names] for kind, names in (("colour", PALETTE), ("shape", SHAPES))}
    name_ids = {kind: {ids[0] for ids in v} if all(len(ids) == 1 for ids in v) else None for kind, v in words.items()}
    collate = SFTCollator(processor, max_length)
    device = next(model.parameters()).device
    parts = ("", "_column", "_row")
    hits = {f"reading_acc{part}{swap}": 0 for part in parts for swap in ("", "_swapped")}
    hits |= {f"naming_acc_{kind}{swap}": 0 for kind in name_ids for swap in ("", "_swapped")}
    counts = {"": 0, "_column": 0, "_row": 0, "colour": 0, "shape": 0}
    colour_set = torch.tensor(sorted(name_ids["colour"] or []), dtype=torch.long, device=device)
    shape_set = torch.tensor(sorted(name_ids["shape"] or []), dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    batch_size = max(2, batch_size)  # a swap needs two images in a batch
    for i in range(0, len(samples) - 1, batch_size):
        chunk = samples[i : i + batch_size]
        if len(chunk) < 2:
            break
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collate(chunk).items()}
        labels = batch.pop("labels")[:, 1:]
        grids = batch["image_grid_thw"]
        if not bool((grids == grids[:1]).all()):
            raise ValueError("reading_accuracy needs images of one size (one grid) to swap them")
        per = batch["pixel_values"].shape[0] // len(chunk)
        swapped = batch["pixel_values"].view(len(chunk), per, -1).roll(1, dims=0).reshape(batch["pixel_values"].shape)
        column, row = reading_digits(labels, tok)
        masks = {"_column": column, "_row": row}
        masks[""] = masks["_column"] | masks["_row"]
        is_colour = torch.isin(labels, colour_set)
        prev1 = torch.nn.functional.pad(labels, (1, 0), value=-100)[:, :-1]
        named = {"colour": is_colour, "shape": torch.isin(labels, shape_set) & torch.isin(prev1, colour_set)}
        named = {kind: m for kind, m in named.items() if name_ids[kind] is not None}
        for part, m in (masks | named).items():
            counts[part] += int(m.sum())
        with torch.no_grad():
            for swap, pixels in (("", batch["pixel_values"]), ("_swapped", swapped)):
                right = model(**{**batch, "pixel_values": pixels}).logits[:, :-1].argmax(-1) == labels
                for part, m in masks.items():
                    hits[f"reading_acc{part}{swap}"] += int((right & m).sum())
                for kind, m in named.items():
                    hits[f"naming_acc_{kind}{swap}"] += int((right & m).sum())
    model.train(was_training)
    out: dict[str, float | None] = {}
    for k, v in hits.items():
        n = counts[k.removeprefix("reading_acc").removeprefix("naming_acc_").removesuffix("_swapped")]
        out[k] = v / n if n else None  # nothing scored: no accuracy (not 0)
    return out | {"readings": counts[""], "namings": counts["colour"]}


def write_rehearsal(root, count: int, seed: int, image_size: int, objects: tuple[int, int], samples_per_shard: int) -> dict:
    """`count` perception samples (split "rehearsal", fixed by `seed`) as a train split of shards under `root`, for SFT to
    mix into its training stream (`sft.rehearsal`): the warm-up's listings keep being trained while SFT learns the tasks.
    Kept when `root` already holds the same ones; written whole or not at all (`SplitWriter`). Returns the manifest."""
    from pathlib import Path

    from m2r.data.shards import SplitWriter, image_bytes, read_manifest
    from m2r.data.tasks import EMBEDDED_VERSION

    settings = {"count": count, "seed": seed, "image_size": image_size, "objects": list(check_objects(objects)), "generators": EMBEDDED_VERSION,
                "samples_per_shard": samples_per_shard}
    root = Path(root)
    if (root / "train" / "manifest.json").exists():
        manifest = read_manifest(root, "train")
        if manifest.get("rehearsal") == settings:
            return manifest
    if count < 1 or samples_per_shard < 1:
        raise ValueError(f"sft.rehearsal={count} with data.samples_per_shard={samples_per_shard}: both must be >= 1 to write rehearsal shards")
    writer = SplitWriter(root, "train", samples_per_shard)
    stream = PerceptionStream(seed, 0, count, image_size, objects, split="rehearsal", limit_batches=1)
    try:
        for sample, images in stream:
            writer.write(sample, [image_bytes(im) for im in images])
    except BaseException:
        writer.abort()
        raise
    manifest = writer.close({"source": "perceive", "rehearsal": settings})
    log.info("rehearsal: %d perception samples in %s", manifest["count"], root / "train")
    return manifest
