"""benchmarks/recall_probe.py: its texts hold what it says they hold, and it trains and scores end to end."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("recall_probe", Path(__file__).parents[2] / "benchmarks" / "recall_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)

LINE = re.compile(r"^\d+\. The (\w+ \w+) is in column (\d), row (\d)\.$", re.M)
LOOKED = re.compile(r"^The (\w+ \w+) is in column (\d), row (\d)\.$", re.M)


def test_look_ups_copy_the_listing_lines_of_the_asked_names_and_the_redrawn_listing_keeps_them():
    rng = random.Random(0)
    seen_asked = set()
    for _ in range(50):
        text, redrawn, n = probe.lookup_text(rng, locate=1.0, many=True)
        listed = LINE.findall(text)
        assert len(listed) == n and f"I see {n} objects" in text
        assert [int(c) for _, c, _ in listed] == sorted(int(c) for _, c, _ in listed)  # left to right
        asked = re.search(r"Then say where the (.+) (?:is|are)\.", text).group(1).split(" and the ")
        looked = LOOKED.findall(text)
        assert [name for name, _, _ in looked] == asked
        assert all(line in listed for line in looked)  # each look-up is its name's listing line
        seen_asked.add(len(asked))
        # the redrawn text: the same question, names and look-ups, other listing readings, the same length in characters
        assert LOOKED.findall(redrawn) == looked and [m for m, _, _ in LINE.findall(redrawn)] == [m for m, _, _ in listed]
        assert len(redrawn) == len(text) and redrawn.split("\n<think>")[0] == text.split("\n<think>")[0]
    assert max(seen_asked) > 2  # `many` asks for more than the warm-up's one or two
    few = [probe.lookup_text(rng, locate=1.0, many=False) for _ in range(30)]
    assert {len(LOOKED.findall(t)) for t, _, _ in few} == {1, 2}
    assert not any(LOOKED.findall(t) for t, _, _ in (probe.lookup_text(rng, locate=0.0, many=False) for _ in range(10)))


def test_pairs_query_every_key_once_and_mark_its_value():
    rng = random.Random(1)
    keys, values, marks = list(range(100, 124)), list(range(200, 209)), (1, 2, 3)
    for _ in range(20):
        ids, redrawn, mask = probe.pairs_text(rng, 5, keys, values, marks)
        assert len(ids) == len(redrawn) == len(mask) and ids[0] == 1
        q = ids.index(3)
        head = dict(zip(ids[1:q:3], ids[2:q:3]))
        assert len(head) == 5 and ids[3:q:3] == [2] * 5
        tail = ids[q + 1 :]
        assert sorted(tail[0::3]) == sorted(head) and all(head[k] == v for k, v in zip(tail[0::3], tail[1::3]))
        assert [i for i, m in enumerate(mask) if m] == [q + 2 + 3 * j for j in range(5)]
        assert redrawn[q:] == ids[q:] and redrawn[1:q:3] == ids[1:q:3]  # only the head's values are redrawn


def test_first_of_keeps_each_rows_first_query():
    import torch

    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    assert probe.first_of(mask).int().tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_both_tasks_train_and_write_their_evaluations(tmp_path, cache_dir):
    for task in ("lookup", "pairs"):
        out = tmp_path / f"{task}.json"
        assert probe.main(["--task", task, "--steps", "8", "--eval", "8", "--locate", "1.0", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
        log = json.loads(out.read_text())["evaluations"]
        assert [r["step"] for r in log] == list(range(1, 9))
        assert all(0.0 <= r["lookup_acc"] <= 1.0 and 0.0 <= r["lookup_acc_redrawn"] <= 1.0 for r in log)
        assert ("listing_acc" in log[0]) == (task == "lookup") and ("first_acc" in log[0]) == (task == "pairs")
