"""Does a model read its image and its question? Teacher-forced loss of each sample's reference trace.

    python benchmarks/grounding_probe.py <run dir> [--model DIR] [--split val] [--n 16] [--tasks spatial/depth,...]

Per task, the mean loss per response token of the reference traces (the SFT targets) of `--n` samples under
four prompts: the sample's own; its question with another sample's image (same task); its image with another
sample's question; both from another sample. A model that reads the image loses more when the image is
swapped; one that copies from the question (object names, axes) loses more when the question is. Equal
losses mean the model writes the same trace whatever it is shown: it has learnt the task's template and its
answer prior, not to look. The model is `<run>/sft/hf` unless `--model` names a checkpoint folder; the
samples come from `<run>/build/<split>` (the run's own data, links of shared steps followed).
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections import defaultdict
from pathlib import Path


def losses(model, collator, batch) -> list[float]:
    import torch

    b = collator(batch)
    with torch.no_grad():
        logits = model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, :-1].float()
    labels = b["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none")
    mask = labels >= 0
    return ((nll * mask).sum(1) / mask.sum(1)).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder (its sft/hf and build/ are used)")
    ap.add_argument("--model", type=Path, default=None, help="a checkpoint folder instead of <run>/sft/hf")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=16, help="samples per task")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task of the split)")
    ap.add_argument("--max-length", type=int, default=1024)
    args = ap.parse_args(argv)

    from omegaconf import OmegaConf
    from rich.console import Console
    from rich.table import Table

    from m2r.config import ModelConfig
    from m2r.data.collate import SFTCollator
    from m2r.data.shards import sample_stream, shard_urls
    from m2r.pipeline import _load_model

    src = args.model or args.run / "sft" / "hf"
    if not (src / "config.json").exists():
        print(f"no checkpoint at {src}: give a run folder whose SFT finished, or --model <folder with config.json>", file=sys.stderr)
        return 2
    cfg = OmegaConf.create({"model": OmegaConf.structured(ModelConfig()), "paths": {"cache_dir": str(Path.home() / ".cache" / "m2r")}})
    model, processor, _ = _load_model(cfg, src)
    model.eval()
    collator = SFTCollator(processor, args.max_length)
    wanted = set(args.tasks.split(",")) if args.tasks else None
    by_task: dict[str, list] = defaultdict(list)
    for sample, media in sample_stream(shard_urls(args.run / "build", args.split), shuffle_shards=False):
        if (wanted is None or sample.task in wanted) and len(by_task[sample.task]) < args.n:
            by_task[sample.task].append((sample, media))

    table = Table(title=f"loss per response token of the reference traces ({src}, {args.split}, up to {args.n} per task)")
    for col in ("task", "n", "own", "other image", "other question", "other both", "image matters", "question matters"):
        table.add_column(col, justify="left" if col == "task" else "right", no_wrap=True)
    for task, rows in sorted(by_task.items()):
        if len(rows) < 2:
            continue
        nxt = rows[1:] + rows[:1]  # each sample paired with the next one of its task

        def with_question(s, other):
            s2 = copy.deepcopy(s)
            s2.question, s2.choices = other.question, other.choices
            return s2

        own = losses(model, collator, rows)
        has_media = any(m for _, m in rows)
        img = losses(model, collator, [(s, m2) for (s, _), (_, m2) in zip(rows, nxt)]) if has_media else own
        q = losses(model, collator, [(with_question(s, o), m) for (s, m), (o, _) in zip(rows, nxt)])
        both = losses(model, collator, [(with_question(s, o), m2) for (s, _), (o, m2) in zip(rows, nxt)])
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        table.add_row(task, str(len(rows)), f"{mean(own):.3f}", f"{mean(img):.3f}" if has_media else "-", f"{mean(q):.3f}", f"{mean(both):.3f}",
                      f"{mean(img) - mean(own):+.3f}" if has_media else "-", f"{mean(q) - mean(own):+.3f}")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
