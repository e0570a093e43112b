"""Where do the held-out answers of a run go wrong? The steps of the scene traces, scored one by one.

    python benchmarks/trace_probe.py <run dir> [<run dir> ...] [--split heldout_sft]

For each run, reads its held-out responses (`eval/<split>/samples.jsonl`) and the test samples they answer
(`<run dir>/build/test`), and for the two-option scene tasks (relation, depth, rel_distance, rel_direction) counts:

- `looked up`: rows whose look-up lines (the lines after the listing that restate the question's objects, in the order
  named) name the question's objects, right and in order; `first`: the first of them right;
- `own reading`: of the looked-up lines that name an object the model's own listing has, how many copy that
  listing line's column and row (the look-up is a copy, not a second look);
- `names one`: rows whose answer (`<answer>...</answer>`) names exactly one of the options; `named right`: that one
  is the right option; `letter = named`: the boxed letter is that option's;
- `correct`: the held-out score.

A step that fails here fails every answer that needs it; the reading of the image itself is measured by the look
test (`m2r.data.perceive.reading_accuracy`) and `benchmarks/listing_probe.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

TASKS = ("spatial/relation", "spatial/depth", "spatial/rel_distance", "spatial/rel_direction")
LISTED = re.compile(r"^\d+\. The (\w+ \w+) is in (column \d, row \d)\.", re.M)
LOOKED = re.compile(r"^(?:[A-D]: )?The (\w+ \w+) is in (column \d, row \d)\.", re.M)


def named_objects(sample) -> list[str]:
    """The objects the question names, in the order its trace looks them up (the reference's look-up lines)."""
    return [n for n, _ in LOOKED.findall(sample.cot)]


def score_row(sample, response: str, correct: bool) -> Counter:
    """The counts above for one held-out row."""
    from m2r.data.schema import LETTERS

    c = Counter(rows=1, correct=int(bool(correct)))
    want, looked = named_objects(sample), LOOKED.findall(response)
    got = [n for n, _ in looked][: len(want)]
    c["first"] = int(bool(got) and bool(want) and got[0] == want[0])
    c["looked_up"] = int(bool(want) and got == want)
    own = dict(LISTED.findall(response))
    for name, where in looked:
        if name in own:
            c["own_total"] += 1
            c["own_reading"] += int(own[name] == where)
    answer = response.rsplit("<answer>", 1)[1].lower() if "<answer>" in response else ""  # no answer: names none
    hits = [i for i, ch in enumerate(sample.choices) if re.search(rf"\b{re.escape(ch.lower().removeprefix('the '))}\b", answer)]
    if len(hits) == 1:
        c["names_one"] = 1
        c["named_right"] = int(LETTERS[hits[0]] == sample.answer)
        box = re.search(r"\\boxed\{([A-D])\}", answer.upper().replace("\\BOXED", "\\boxed"))
        c["letter_named"] = int(box is not None and box.group(1) == LETTERS[hits[0]])
    return c


def probe_run(run: Path, split: str) -> dict[str, Counter]:
    from m2r.data.shards import read_manifest, sample_stream, shard_urls

    rows = {r["id"]: r for r in map(json.loads, (run / "eval" / split / "samples.jsonl").read_text().splitlines())}
    built = read_manifest(run / "build", "test")["tasks"]
    out: dict[str, Counter] = {}
    for task in (t for t in TASKS if t in built):  # a run without some of these tasks: the others
        urls = shard_urls(run / "build", "test", [task])
        tot = Counter()
        for sample, _ in sample_stream(urls, shuffle_shards=False):
            if sample.id in rows:
                tot += score_row(sample, rows[sample.id]["response"], rows[sample.id].get("correct"))
        if tot["rows"]:
            out[task] = tot
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (with eval/<split>/samples.jsonl and build/)")
    ap.add_argument("--split", default="heldout_sft", help="which held-out evaluation: heldout_sft | heldout_grpo")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    print("| run | task | rows | correct | first name | looked up | own reading | names one | named right | letter = named |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in args.runs:
        if not (run / "eval" / args.split / "samples.jsonl").exists():
            raise SystemExit(f"{run}: no eval/{args.split}/samples.jsonl; run the `{args.split}` step first (or pass --split)")
        for task, c in probe_run(run, args.split).items():
            print(f"| {run.name} | {task.removeprefix('spatial/')} | {c['rows']} | {c['correct']} | {c['first']} | {c['looked_up']} | "
                  f"{c['own_reading']}/{c['own_total']} | {c['names_one']} | {c['named_right']} | {c['letter_named']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
