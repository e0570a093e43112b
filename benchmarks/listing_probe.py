"""Does a model list what it sees when it writes freely? Greedy listings of held-out perception scenes, scored.

    python benchmarks/listing_probe.py <checkpoint folder> [<checkpoint folder> ...] [--n 64] [--seed 0] [--locate]

The look test (`m2r.data.perceive.reading_accuracy`) is teacher-forced: it scores each reading given the right
listing so far. Here each model writes its own listing of `--n` held-out scenes (`PerceptionStream`, split "val",
the scenes the warm-up's look test uses) and the listing is compared with the scene's: how many objects it lists
against how many there are, how many scenes it counts exactly, how many of the scene's object names it says, and,
object by object from the left, how often the colour and the column are right. A model that loops or stops early
shows it here and nowhere in the teacher-forced numbers.

`--locate`: every scene's question also names one or two of its objects (the warm-up's `locate` questions) and the
model's look-ups after its listing are scored too: how often each names the object the question asked for, in order
(the copy from the question), equals a line of the model's own listing for the name it gives (the look-up in its
listing; counted over the look-ups whose name that listing has), and gives the asked object's true reading. `--teacher-forced` adds the reading digits' accuracy given the right listing,
the listing's against the look-ups' (which are then copies of its lines), with own and swapped images.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^\d+\. The (\w+) (\w+) is in column (\d), row (\d)\.", re.M)  # numbered listing lines, not look-ups
LOOKUP = re.compile(r"^(?:[AB]: )?The (\w+ \w+) is in (column \d, row \d)\.", re.M)  # look-ups: a listing line unnumbered (v7's options labelled)
ASKED = re.compile(r"Then say where the (\w+ \w+)(?: and the (\w+ \w+))? (?:is|are)\.")


def score_lookups(question: str, reference: str, response: str) -> dict[str, int]:
    """Counts for one locate scene: names asked; look-ups that name the asked object in its place (`named`); of the
    look-ups whose name the response's own listing has (`listed`), those equal to one of its lines for that name
    (`own`); look-ups in the asked object's place that give its true reading (`true`)."""
    asked = [n for n in ASKED.search(question).groups() if n]
    truth = {f"{c} {s}": f"column {col}, row {row}" for c, s, col, row in LINE.findall(reference)}
    own: dict[str, set[str]] = {}
    for c, s, col, row in LINE.findall(response):  # a listing may repeat a name: any of its lines is a copy
        own.setdefault(f"{c} {s}", set()).add(f"column {col}, row {row}")
    said = LOOKUP.findall(response)[: len(asked)]
    return {"asked": len(asked), "named": sum(a == n for a, (n, _) in zip(asked, said)),
            "all_named": int(len(said) == len(asked) and all(a == n for a, (n, _) in zip(asked, said))),
            "listed": sum(n in own for n, _ in said), "own": sum(where in own.get(n, ()) for n, where in said),
            "true": sum(truth.get(a) == where for a, (_, where) in zip(asked, said))}


def reading_parts(labels, tokenizer, counts: list[int]):
    """Masks of a batch's reading digits (`perceive.reading_digits`), split into the listing's (the first 2 x count of each row) and the look-ups' (the rest)."""
    import torch

    from m2r.data.perceive import reading_digits

    column, row = reading_digits(labels, tokenizer)
    reading = column | row
    listing = reading & (reading.cumsum(1) <= 2 * torch.tensor(counts).unsqueeze(1))
    return listing, reading & ~listing


def teacher_forced(model, processor, held, batch_size: int = 16) -> dict[str, float]:
    """Teacher-forced accuracy of the listing's and the look-ups' reading digits, with each scene's own image and with
    the images moved one scene on. With the right listing in context a look-up is a copy of one of its lines: a model
    that copies gets it right whatever the image; one that reads the image again does no better than its listing."""
    import torch

    from m2r.data.collate import SFTCollator

    hits = {f"{part}{swap}": [0, 0] for part in ("listing", "lookup") for swap in ("", "_swapped")}
    for i in range(0, len(held) - 1, batch_size):
        chunk = held[i : i + batch_size]
        batch = SFTCollator(processor, 768)(chunk)
        labels = batch.pop("labels")[:, 1:]
        masks = dict(zip(("listing", "lookup"), reading_parts(labels, processor.tokenizer, [int(s.answer) for s, _ in chunk])))
        per = batch["pixel_values"].shape[0] // len(chunk)
        swapped = batch["pixel_values"].view(len(chunk), per, -1).roll(1, dims=0).reshape(batch["pixel_values"].shape)
        for swap, pixels in (("", batch["pixel_values"]), ("_swapped", swapped)):
            with torch.no_grad():
                right = model(**{**batch, "pixel_values": pixels}).logits[:, :-1].argmax(-1) == labels
            for part, m in masks.items():
                hits[part + swap][0] += int((right & m).sum())
                hits[part + swap][1] += int(m.sum())
    return {k: h / n if n else float("nan") for k, (h, n) in hits.items()}


def score_listing(reference: str, response: str) -> dict[str, int]:
    """Counts for one scene: objects in the reference and in the response, whether their numbers agree, names of the
    reference said in the response (as a multiset), and, pairing objects left to right, right colours and columns."""
    truth, said = LINE.findall(reference), LINE.findall(response)
    pairs = list(zip(truth, said))
    names = Counter((c, s) for c, s, _, _ in truth) & Counter((c, s) for c, s, _, _ in said)
    return {"objects": len(truth), "said": len(said), "count_right": int(len(truth) == len(said)), "names_found": sum(names.values()),
            "paired": len(pairs), "colour_right": sum(a[0] == b[0] for a, b in pairs), "column_right": sum(a[2] == b[2] for a, b in pairs)}


def summarise(counts: list[dict[str, int]]) -> dict[str, float]:
    tot = Counter()
    for c in counts:
        tot.update(c)
    n = len(counts)
    return {"scenes": n, "objects": tot["objects"] / n, "said": tot["said"] / n, "count_right": tot["count_right"] / n,
            "names_found": tot["names_found"] / max(1, tot["objects"]), "colour_right": tot["colour_right"] / max(1, tot["paired"]),
            "column_right": tot["column_right"] / max(1, tot["paired"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", type=Path, nargs="+", help="checkpoint folders (e.g. <run>/perceive/hf <run>/sft/hf)")
    ap.add_argument("--n", type=int, default=64, help="held-out scenes")
    ap.add_argument("--seed", type=int, default=0, help="the run's seed (the scenes are drawn from it)")
    ap.add_argument("--image-size", type=int, default=168)
    ap.add_argument("--objects", default="2,6", help="lo,hi objects per scene (perceive.objects)")
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--locate", action="store_true", help="questions that also name one or two objects; score the look-ups")
    ap.add_argument("--teacher-forced", action="store_true", help="with --locate: also the teacher-forced reading digits of the listing and the look-ups")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from m2r.data.perceive import PerceptionStream
    from m2r.data.schema import format_question
    from m2r.eval.items import EvalItem
    from m2r.eval.runner import generate_responses

    lo, hi = (int(x) for x in args.objects.split(","))
    held = list(PerceptionStream(args.seed, 0, args.n, args.image_size, (lo, hi), split="val", limit_batches=1, locate=1.0 if args.locate else 0.0))
    items = [EvalItem(key={"id": s.id}, question=format_question(s), options=[], answer=s.answer, images=list(im), meta={"task": s.task}) for s, im in held]
    table = Table(title=f"free-generation listings of {args.n} held-out scenes (greedy)")
    for col in ("model", "objects", "listed", "count right", "names found", "colour right", "column right"):
        table.add_column(col, justify="left" if col == "model" else "right")
    lookups = Table(title=f"look-ups of the objects the question names ({args.n} scenes)")
    for col in ("model", "asked", "names the asked object", "scenes with every name right", "= own listing line (of those listed)", "true reading"):
        lookups.add_column(col, justify="left" if col == "model" else "right")
    for folder in args.models:
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
        processor = AutoProcessor.from_pretrained(folder)
        texts = generate_responses(model, processor, items, "m2", 16, args.max_new_tokens)
        s = summarise([score_listing(sample.cot, text) for (sample, _), text in zip(held, texts)])
        table.add_row(str(folder), f"{s['objects']:.2f}", f"{s['said']:.2f}", f"{100 * s['count_right']:.1f}%", f"{100 * s['names_found']:.1f}%",
                      f"{100 * s['colour_right']:.1f}%", f"{100 * s['column_right']:.1f}%")
        print(f"{folder}: first listing: {texts[0][:240]!r}")
        if args.locate:
            looked = Counter()
            for (sample, _), text in zip(held, texts):
                looked.update(score_lookups(sample.question, sample.cot, text))
            lookups.add_row(str(folder), str(looked["asked"]), f"{100 * looked['named'] / looked['asked']:.1f}%", f"{100 * looked['all_named'] / args.n:.1f}%",
                            f"{looked['own']}/{looked['listed']}", f"{100 * looked['true'] / looked['asked']:.1f}%")
    Console().print(table)
    if args.locate:
        Console().print(lookups)
    if args.locate and args.teacher_forced:
        forced = Table(title=f"teacher-forced reading digits ({args.n} scenes, the right listing in context; own image / swapped)")
        for col in ("model", "listing", "look-ups"):
            forced.add_column(col, justify="left" if col == "model" else "right")
        for folder in args.models:
            model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
            t = teacher_forced(model, AutoProcessor.from_pretrained(folder), held)
            forced.add_row(str(folder), f"{t['listing']:.3f} / {t['listing_swapped']:.3f}", f"{t['lookup']:.3f} / {t['lookup_swapped']:.3f}")
        Console().print(forced)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
