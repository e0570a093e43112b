"""Can a model built from `model.*` learn to see? Train it from scratch on one minimal visual question and
report the accuracy of its answer word on held-out images as it trains.

    python benchmarks/perception_probe.py --task colour --lr 2e-4 --steps 1500
    python benchmarks/perception_probe.py --task side --lit --lr 2e-4 --steps 2000
    python benchmarks/perception_probe.py --task scene-colour --size 168 --lr 5e-4 --steps 1000 --init-std 0.02

Tasks (one square of side image/8 + 1 px on a plain grey image, two for the relation tasks; the scene tasks draw a
simulator scene instead):
  colour    "What colour is the square?": find one small object among background tokens (no position needed)
  side      "Is the <c> square in the left or right half of the image?": where one object is
  relation  "Is the <a> square to the left or to the right of the <b> square?": bind two names to two
            objects and compare where they are (the embedded default's spatial/relation in miniature)
  relation-bins  the same, but the trace reads one square per line before answering ("The red square is in
            column 3.", columns 1-4 of the image, the two squares in different columns): scored on the column digits
  relation-px  the same with the reading in pixels ("The red square is centred near x = 96 px.", as the
            embedded spatial/relation trace does): scored on the digits of both x values
  scene-colour, scene-shape  "What colour / shape is the object?" on a simulator scene (lit floor, walls,
            grid) with one object: the embedded spatial tasks' images, reduced to one object
  scene-locate  "Where is the <c> object?" on a scene of 2-5 objects (the named colour unique), read as "The <c>
            object is in column C, row R." (thirds of the image, `perceive.GRID`): scored on C and R, like relation-bins
  scene-list  "List the objects from left to right.": one line per object, "The <c> <s> is in column C.", then the
            count in \\boxed{}: scored on every C (many readings per image, where scene-locate has one)
`--lit` shades the background from light (left) to dark (right), so a patch's content says where it is.

The reference trace is `<think>\\nIt is X.\\n</think>\\n<answer>\\n\\boxed{X}\\n</answer>` (the stepwise tasks put their two
readings in the `<think>`); the accuracy is that of the greedy token for the first X (for the stepwise tasks: every digit
of the readings, for scene-locate its column and row), teacher-forced, on `--eval` fixed images drawn with another seed.
Chance is 1/6 for `colour`, 1/8 for `scene-colour`, 1/3 for `scene-shape`, 1/2 for `side` and `relation`; for the stepwise tasks the floor is what a model that does not look reaches (their logs show it before the jump). The model starts from what `model.*` builds (random weights for the tiny model). Training is plain AdamW on batches of `--batch` fresh
samples, through the SFT collator and the model factory the recipe uses (nothing here is a tiny-only path:
`--model-config` takes any model group yaml, e.g. conf/model/tiny_qwen2_5_vl.yaml with its `tiny:` edited).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

TASKS = ["colour", "side", "relation", "relation-bins", "relation-px", "scene-colour", "scene-shape", "scene-locate", "scene-list"]
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 210, 20), "purple": (140, 40, 170), "orange": (245, 130, 10)}


def quarter(t: float, size: int, cells: int | None = None) -> int:
    """Which cell (1-cells; default the recipe's `perceive.GRID`, thirds) of the image pixel coordinate t falls in:
    the readings' column and row: the recipe's `perceive.cell`. (Named when the recipe read quarters; the squares'
    tasks still call it.)"""
    from m2r.data.perceive import GRID, cell

    return cell(t, size, cells or GRID)


def make_sample(rng: random.Random, task: str, size: int, lit: bool, objects: tuple[int, int] = (2, 5), column_only: bool = False, ramp: float = 0.0, min_px: int = 40,
                rows: bool = False, vramp: float = 0.0, spread: bool = True, cells: int | None = None):
    from PIL import Image, ImageDraw

    from m2r.data.schema import Sample

    side = size // 8
    def sample(question: str, answer: str, think: str, img):
        cot = f"<think>\n{think}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
        return Sample(id="probe", task="spatial/relation", question=question, answer=answer, answer_type="text", images=["img0.png"], choices=[], cot=cot), [img]

    if task.startswith("scene-"):
        from m2r.data.scene import sample_scene
        from m2r.data.tasks import _pixel

        scene, img = sample_scene(rng, size, n_objects=objects if task in ("scene-locate", "scene-list") else (1, 1), min_visible_px=min_px, spread=spread)
        if ramp:
            img = ramped(img, ramp)
        if vramp:
            img = ramped(img, vramp, vertical=True)
        if task == "scene-list":
            placed = sorted(((_pixel(scene, o), o) for o in scene.objects), key=lambda t: t[0][0])
            lines = [f"The {o.colour} {o.shape} is in column {quarter(x, size, cells)}" + (f", row {quarter(y, size, cells)}." if rows else ".") for (x, y), o in placed]
            return sample("List the objects from left to right.", str(len(placed)), "\n".join(lines), img)
        if task == "scene-locate":
            obj = rng.choice([o for o in scene.objects if sum(p.colour == o.colour for p in scene.objects) == 1] or scene.objects[:1])
            col, row = (quarter(t, size) for t in _pixel(scene, obj))
            if column_only:
                return sample(f"In which column is the {obj.colour} object?", str(col), f"The {obj.colour} object is in column {col}.", img)
            return sample(f"Where is the {obj.colour} object?", f"{col},{row}", f"The {obj.colour} object is in column {col}, row {row}.", img)
        answer = scene.objects[0].colour if task == "scene-colour" else scene.objects[0].shape
        return sample(f"What {task.removeprefix('scene-')} is the object?", answer, f"It is {answer}.", img)
    column = lambda x: quarter(x + side / 2, size, 4)  # noqa: E731  (of the square's centre; quarters, as measured)
    if task.startswith("relation"):
        a, b = rng.sample(list(COLOURS), 2)
        while True:
            (xa, ya), (xb, yb) = [(rng.randrange(0, size - side), rng.randrange(0, size - side)) for _ in range(2)]
            if abs(xa - xb) > side and (task != "relation-bins" or column(xa) != column(xb)):
                break
        squares = [(a, xa, ya), (b, xb, yb)]
        answer = "left" if xa < xb else "right"
        question = f"Is the {a} square to the left or to the right of the {b} square?"
    elif task in ("colour", "side"):
        c, x, y = rng.choice(list(COLOURS)), rng.randrange(0, size - side), rng.randrange(0, size - side)
        squares = [(c, x, y)]
        if task == "colour":
            answer, question = c, "What colour is the square?"
        else:
            answer = "left" if x + side / 2 < size / 2 else "right"
            question = f"Is the {c} square in the left or right half of the image?"
    else:
        raise ValueError(f"unknown task {task!r}: {' | '.join(TASKS)}")

    img = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    if lit:
        for x in range(size):
            v = int(200 - 120 * x / size)
            draw.line([(x, 0), (x, size)], fill=(v, v, v))
    for colour, x, y in squares:
        draw.rectangle([x, y, x + side, y + side], fill=COLOURS[colour])
    think = f"It is {answer}."
    if task == "relation-bins":
        think = f"The {a} square is in column {column(xa)}.\nThe {b} square is in column {column(xb)}."
    elif task == "relation-px":
        think = f"The {a} square is centred near x = {xa + side // 2} px.\nThe {b} square is centred near x = {xb + side // 2} px."
    return sample(question, answer, think, img)


def ramped(img, strength: float, vertical: bool = False):
    """The whole image (objects included) darkened linearly from left (x1) to right (x 1 - strength), or from top to
    bottom (`vertical`): a cue of the image column (row) in every patch's content, unlike the scenes' lit floor, which
    follows the room's x."""
    import numpy as np
    from PIL import Image

    px = np.asarray(img).astype(np.float32)
    gain = 1.0 - strength * (np.arange(px.shape[0 if vertical else 1]) + 0.5) / px.shape[0 if vertical else 1]
    gain = gain[:, None, None] if vertical else gain[None, :, None]
    return Image.fromarray(np.rint(px * gain).clip(0, 255).astype(np.uint8))


STEPWISE = ("relation-bins", "relation-px", "scene-locate", "scene-list")


def scored_ids(tokenizer, task: str) -> list[int]:
    """The token ids scored: the answer words' first tokens, or for the stepwise relation tasks the digits of the
    readings (their final left/right compares digits already in the teacher-forced context: no look needed)."""
    from m2r.data.scene import PALETTE, SHAPES

    stepwise = task in STEPWISE
    words = list("1234") if task in ("scene-locate", "scene-list") else list("0123456789") if stepwise else [*COLOURS, *PALETTE, *SHAPES, "left", "right"]
    return sorted({tokenizer(" " + w, add_special_tokens=False)["input_ids"][-1 if stepwise else 0] for w in words})


def scored(labels, ids: list[int], task: str, column_only: bool = False):
    """Mask of the scored label positions: every scored token (stepwise tasks) or the first per row."""
    import torch

    hit = torch.isin(labels, torch.tensor(ids))
    if task == "scene-locate":
        return hit & (hit.cumsum(1) <= (1 if column_only else 2))  # the reading's column (and row), not their copy in \\boxed{}
    if task == "scene-list":
        raise ValueError("scene-list is scored by reading_masks (its digits follow a cue word)")
    return hit if task in STEPWISE else hit & (hit.cumsum(1) == 1)


def reading_masks(labels, tokenizer):
    """scene-list's scored positions: every reading digit (`perceive.reading_digits`: a digit whose cue word, "column"
    or "row", is two tokens back, as the recipe's look test scores them), and those of the rows alone. Not the count in
    \\boxed{}, whatever its value, and every reading, whatever the grid."""
    from m2r.data.perceive import reading_digits

    column, row = reading_digits(labels, tokenizer)
    return column | row, row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="colour", choices=TASKS)
    ap.add_argument("--lit", action="store_true", help="background shaded left to right (a content cue for position)")
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=112, help="image side, pixels")
    ap.add_argument("--eval", type=int, default=64, help="held-out images")
    ap.add_argument("--every", type=int, default=100, help="evaluate every N steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "m2r", help="where the tiny model's tokenizer is kept (paths.cache_dir)")
    ap.add_argument("--model-config", type=Path, default=None, help="a model group yaml (default: conf/model/tiny_qwen2_5_vl.yaml's defaults)")
    ap.add_argument("--init-std", type=float, default=None, help="model.tiny.initializer_range (default: the model config's)")
    ap.add_argument("--objects", default="2-5", help="scene-locate: objects per scene, LO-HI")
    ap.add_argument("--column-only", action="store_true", help="scene-locate: read (and score) the column alone")
    ap.add_argument("--min-px", type=int, default=40, help="scene tasks: the fewest visible pixels of any object (the simulator's default 40)")
    ap.add_argument("--rows", action="store_true", help="scene-list: read each object's row too (\"column C, row R\")")
    ap.add_argument("--ramp", type=float, default=0.0, help="scene tasks: darken the whole image left to right by this share (0-1)")
    ap.add_argument("--unspread", action="store_true", help="scene tasks: EMBEDDED_VERSION 5's scenes (sample_scene(spread=False): most objects in the middle rows)")
    ap.add_argument("--cells", type=int, default=None, help="scene-list: columns and rows of the reading grid (default: the recipe's, thirds since v6; 4 = v5's quarters)")
    ap.add_argument("--vramp", type=float, default=0.0, help="scene tasks: darken the whole image top to bottom by this share (0-1)")
    args = ap.parse_args(argv)
    if args.cells is not None and not 2 <= args.cells <= 9:
        ap.error(f"--cells {args.cells}: a reading is one digit, so 2 to 9 cells a side")
    objects = tuple(int(n) for n in args.objects.split("-"))
    if len(objects) != 2 or not 1 <= objects[0] <= objects[1]:
        ap.error(f"--objects {args.objects!r}: give LO-HI with 1 <= LO <= HI, e.g. 2-5")
    if args.lit and args.task.startswith("scene-"):
        ap.error("--lit shades the grey background of the square tasks; the scene tasks' floor is always lit from the left wall")

    import torch
    from omegaconf import OmegaConf

    from m2r.config import ModelConfig
    from m2r.data.collate import SFTCollator
    from m2r.model.load import build_model, load_processor

    torch.manual_seed(args.seed)
    cfg = OmegaConf.structured(ModelConfig())
    if args.model_config is not None:
        cfg = OmegaConf.merge(cfg, {k: v for k, v in OmegaConf.to_container(OmegaConf.load(args.model_config)).items() if k != "defaults"})
    if args.init_std is not None:
        cfg = OmegaConf.merge(cfg, {"tiny": {"initializer_range": args.init_std}})
    cfg = OmegaConf.to_object(cfg)
    processor = load_processor(cfg, str(args.cache_dir))
    model = build_model(cfg, processor)
    collate = SFTCollator(processor, 512)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng, eval_rng = random.Random(args.seed), random.Random(10_000 + args.seed)
    held_out = collate([make_sample(eval_rng, args.task, args.size, args.lit, objects, args.column_only, args.ramp, args.min_px, args.rows, args.vramp, not args.unspread, args.cells) for _ in range(args.eval)])
    answer_ids = scored_ids(processor.tokenizer, args.task)

    # The same held-out texts with each image moved one row on (every image has the same grid): a model that reads its
    # image falls to the floor there, one that answers from the text alone does not.
    grids = held_out["image_grid_thw"]
    assert (grids == grids[:1]).all(), "the probe's images all have one size"
    patches = held_out["pixel_values"].shape[0] // args.eval
    swapped = dict(held_out, pixel_values=held_out["pixel_values"].view(args.eval, patches, -1).roll(1, dims=0).reshape(held_out["pixel_values"].shape))

    def accuracy(inputs) -> tuple[float, float, float]:
        """(accuracy on every scored digit, held-out loss, accuracy on the rows alone: scene-list --rows, else nan)."""
        model.eval()
        with torch.no_grad():
            out = model(**inputs)
        model.train()
        labels, pred = inputs["labels"][:, 1:], out.logits[:, :-1].argmax(-1)
        if args.task == "scene-list":
            first, rows = reading_masks(labels, processor.tokenizer)
            rows = rows if args.rows else None
        else:
            first, rows = scored(labels, answer_ids, args.task, args.column_only), None
        right = (pred == labels) & first
        row_acc = float((right & rows).sum() / rows.sum().clamp(min=1)) if rows is not None else float("nan")
        return float(right.sum() / first.sum().clamp(min=1)), float(out.loss), row_acc

    print(f"task {args.task}{' (lit)' if args.lit else ''}, lr {args.lr}, {args.steps} steps of {args.batch}, {args.size} px", flush=True)
    t0 = time.time()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            acc, loss, row_acc = accuracy(held_out)
            swap_acc, _, swap_row = accuracy(swapped)
            rows = f"  rows {row_acc:.3f} (swapped {swap_row:.3f})" if row_acc == row_acc else ""
            print(f"step {step:5d}  held-out loss {loss:.3f}  answer accuracy {acc:.3f}  with swapped images {swap_acc:.3f}{rows}  {time.time() - t0:.0f}s", flush=True)
        if step == args.steps:
            break
        loss = model(**collate([make_sample(rng, args.task, args.size, args.lit, objects, args.column_only, args.ramp, args.min_px, args.rows, args.vramp, not args.unspread, args.cells) for _ in range(args.batch)])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
