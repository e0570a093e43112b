"""benchmarks/recall_probe.py: its texts hold what it says they hold, and it trains and scores end to end."""

from __future__ import annotations

import importlib.util
import json
import random
import re
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("recall_probe", Path(__file__).parents[2] / "benchmarks" / "recall_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)

LINE = re.compile(r"^\d+\. The (\w+ \w+) is in column (\d), row (\d)\.$", re.M)
LOOKED = re.compile(r"^The (\w+ \w+) is in column (\d), row (\d)\.$", re.M)


def test_look_ups_copy_the_listing_lines_of_the_asked_names_and_the_redrawn_listing_keeps_them():
    rng = random.Random(0)
    seen_asked, differs = set(), 0
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
        differs += LINE.findall(redrawn) != listed
    assert differs > 40  # the control is redrawn (a listing of 2 objects can come out the same by chance)
    assert max(seen_asked) > 2  # `many` asks for more than the warm-up's one or two
    few = [probe.lookup_text(rng, locate=1.0, many=False) for _ in range(30)]
    assert {len(LOOKED.findall(t)) for t, _, _ in few} == {1, 2}
    assert not any(LOOKED.findall(t) for t, _, _ in (probe.lookup_text(rng, locate=0.0, many=False) for _ in range(10)))


def test_pairs_query_every_key_once_and_mark_its_value():
    rng, differs = random.Random(1), 0
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
        differs += redrawn[2:q:3] != ids[2:q:3]
    assert differs >= 18  # and they are redrawn


def test_pairs_with_a_gap_and_two_id_keys_put_the_fillers_between_each_key_and_its_value():
    rng = random.Random(2)
    keys, values, marks, gap = list(range(100, 124)), list(range(200, 209)), (1, 2, 3), [12, 13, 14, 15]
    for two in (False, True):
        width = (2 if two else 1) + len(gap) + 2  # key ids, fillers, value, separator
        for _ in range(20):
            ids, redrawn, mask = probe.pairs_text(rng, 5, keys, values, marks, gap, two)
            q = ids.index(3)
            lines = [ids[i : i + width] for i in range(1, q, width)]
            assert len(lines) == 5 and all(line[-1] == 2 and line[-2 - len(gap) : -2] == gap for line in lines)
            head = {tuple(line[: width - len(gap) - 2]): line[-2] for line in lines}
            assert len(head) == 5  # distinct keys
            if two:
                assert all(k[0] in keys[:8] and k[1] in keys[8:11] for k in head)
            tail = [ids[i : i + width] for i in range(q + 1, len(ids), width)]
            assert sorted(tuple(t[: width - len(gap) - 2]) for t in tail) == sorted(head)
            assert all(head[tuple(t[: width - len(gap) - 2])] == t[-2] for t in tail)
            assert [i for i, m in enumerate(mask) if m] == [q + 1 + width * j + width - 2 for j in range(5)]  # the queried values
            assert redrawn[q:] == ids[q:]
    # the defaults are the plain task, id for id as before the options came (recall_probe.py at cdfa914, Random(3))
    ids, redrawn, mask = probe.pairs_text(random.Random(3), 5, keys, values, marks)
    assert ids == [1, 107, 207, 2, 118, 201, 2, 117, 200, 2, 104, 207, 2, 111, 204, 2, 3, 111, 204, 2, 104, 207, 2, 118, 201, 2, 107, 207, 2, 117, 200, 2]
    assert redrawn[:16] == [1, 107, 208, 2, 118, 203, 2, 117, 203, 2, 104, 207, 2, 111, 208, 2] and redrawn[16:] == ids[16:]
    assert [i for i, m in enumerate(mask) if m] == [18, 21, 24, 27, 30]


def test_a_second_value_follows_the_first_after_its_fillers_and_both_are_scored():
    rng = random.Random(5)
    keys, values, marks = list(range(100, 124)), list(range(200, 209)), (1, 2, 3)
    redrawn_first = redrawn_second = 0
    for value_gap in ([], [40]):
        width = 2 + 1 + len(value_gap) + 1 + 1  # two key ids, value, fillers, value, separator
        for _ in range(20):
            ids, redrawn, mask = probe.pairs_text(rng, 5, keys, values, marks, [], True, value_gap)
            q = ids.index(3)
            head = {tuple(ids[i : i + 2]): ids[i + 2 : i + width - 1] for i in range(1, q, width)}
            assert len(head) == 5 and all(v[1 : 1 + len(value_gap)] == value_gap and v[0] in values and v[-1] in values for v in head.values())
            tail = [ids[i : i + width] for i in range(q + 1, len(ids), width)]
            assert all(head[tuple(t[:2])] == t[2:-1] for t in tail)  # each query repeats its key's two values
            scored = [i for i, m in enumerate(mask) if m]
            assert scored == [q + 1 + width * j + o for j in range(5) for o in (2, width - 2)]  # both values of every query
            assert redrawn[q:] == ids[q:]
            at = lambda x, o: [x[i + o] for i in range(1, q, width)]  # noqa: E731  (offset o of every head line)
            assert at(redrawn, 0) == at(ids, 0) and at(redrawn, 1) == at(ids, 1)  # the keys stay
            redrawn_first += at(redrawn, 2) != at(ids, 2)
            redrawn_second += at(redrawn, width - 2) != at(ids, width - 2)
    assert redrawn_first >= 36 and redrawn_second >= 36  # both values of the head are redrawn (20 texts per gap)


def test_bad_pair_shapes_are_refused_with_the_fix(capsys, tmp_path):
    for argv, says in ((["--task", "pairs", "--value-gap", "1"], "add --values-per-key 2"), (["--task", "pairs", "--gap", "30"], "0 to 28"),
                       (["--task", "pairs", "--key-tokens", "2", "--keys", "10"], "--keys >= 11"), (["--task", "pairs", "--value-gap", "61", "--values-per-key", "2"], "0 to 60"),
                       (["--task", "lookup", "--gap", "1"], "--gap is an option of --task pairs"), (["--task", "pairs", "--line", "colon"], "--line is an option of --task lookup"),
                       (["--task", "pairs", "--unique-colours"], "--unique-colours is an option of --task lookup")):
        with pytest.raises(SystemExit):  # a short run, so that a check that is missing fails fast instead of training
            probe.main([*argv, "--steps", "8", "--eval", "2", "--cache-dir", str(tmp_path)])
        assert says in capsys.readouterr().err


def test_colon_lines_and_unique_colours():
    rng = random.Random(4)
    line = re.compile(r"^\d+\. The (\w+) (\w+): column (\d), row (\d)\.$", re.M)
    looked = re.compile(r"^The (\w+ \w+): column (\d), row (\d)\.$", re.M)
    shared = 0
    for _ in range(40):
        text, _, n = probe.lookup_text(rng, locate=1.0, many=True, line="colon", unique_colours=True)
        listed = line.findall(text)
        assert len(listed) == n and len({c for c, _, _, _ in listed}) == n  # every object its own colour
        readings = {(f"{colour} {shape}", c, r) for colour, shape, c, r in listed}
        assert looked.findall(text) and set(looked.findall(text)) <= readings and "is in column" not in text  # look-ups copy lines
        plain, _, m = probe.lookup_text(rng, locate=1.0, many=True)
        names = [m2.group(1).split()[0] for m2 in LINE.finditer(plain)]
        shared += len(set(names)) < len(names)
    assert shared > 5  # without --unique-colours, objects do share colours


def test_colon_lines_split_into_listing_and_look_up_digits(processor):
    import torch

    tok, rng = processor.tokenizer, random.Random(6)
    listed_line = re.compile(r"^\d+\. The \w+ \w+: column (\d), row (\d)\.$", re.M)
    looked_line = re.compile(r"^The \w+ \w+: column (\d), row (\d)\.$", re.M)
    for _ in range(20):
        text, _, n = probe.lookup_text(rng, locate=1.0, many=True, line="colon")
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        listing, looked = probe.reading_parts(ids, tok, [n])
        digits = lambda m: [int(tok.decode([t]).strip()) for t in ids[0][m[0]]]  # noqa: E731
        assert digits(listing) == [int(d) for line in listed_line.findall(text) for d in line]
        assert digits(looked) == [int(d) for line in looked_line.findall(text) for d in line] != []


def test_first_of_keeps_each_rows_first_query():
    import torch

    mask = torch.tensor([[0, 1, 0, 1, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 1]], dtype=torch.bool)
    assert probe.first_of(mask).int().tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]


def test_key_blind_is_the_brute_force_expectation():
    from collections import Counter
    from itertools import product

    for pairs, values in ((1, 4), (2, 2), (3, 3), (5, 4), (4, 9)):
        brute = []
        for r in range(pairs, 0, -1):
            draws = list(product(range(values), repeat=r))
            brute.append(sum(max(Counter(d).values()) for d in draws) / len(draws) / r)
        assert probe.key_blind(pairs, values) == pytest.approx(brute)
    assert probe.key_blind(2, 2) == pytest.approx([0.75, 1.0])  # two values of two: the same one half the time
    assert probe.key_blind(5, 9)[0] == pytest.approx(0.3708, abs=1e-4) and probe.key_blind(5, 9)[-1] == 1.0


def test_the_look_up_and_listing_digits_are_split_and_name_blind_answers_the_listing_mode(processor):
    import torch

    from m2r.data.perceive import reading_digits

    tok = processor.tokenizer
    rng = random.Random(2)
    for _ in range(30):
        text, redrawn, n = probe.lookup_text(rng, locate=1.0, many=True)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        assert ids.shape == torch.tensor([tok(redrawn, add_special_tokens=False)["input_ids"]]).shape
        listing, looked = probe.reading_parts(ids, tok, [n])
        digits = lambda m: [int(tok.decode([t]).strip()) for t in ids[0][m[0]]]  # noqa: E731
        assert digits(listing) == [int(d) for line in LINE.findall(text) for d in line[1:]]
        assert digits(looked) == [int(d) for line in LOOKED.findall(text) for d in line[1:]]
    # name_blind on a hand-made listing: columns 1, 1, 3 (mode 1) and rows 2, 3, 3 (mode 3); look-ups (3, 3) and (1, 2)
    text = ("Q\n<think>\nI see 3 objects, from left to right:\n1. The red cube is in column 1, row 2.\n2. The blue cube is in column 1, row 3.\n"
            "3. The red sphere is in column 3, row 3.\nThe red sphere is in column 3, row 3.\nThe red cube is in column 1, row 2.\n</think>")
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    listing, looked = probe.reading_parts(ids, tok, [3])
    assert probe.name_blind(ids, listing, looked, reading_digits(ids, tok)[0]) == 0.5  # column 1 and row 3 right, once each


def test_both_tasks_train_and_write_their_evaluations(tmp_path, cache_dir):
    for task in ("lookup", "pairs"):
        out = tmp_path / f"{task}.json"
        assert probe.main(["--task", task, "--steps", "8", "--eval", "8", "--locate", "1.0", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
        log = json.loads(out.read_text())["evaluations"]
        assert [r["step"] for r in log] == list(range(1, 9))
        assert all(0.0 <= r["lookup_acc"] <= 1.0 and 0.0 <= r["lookup_acc_redrawn"] <= 1.0 for r in log)
        assert ("listing_acc" in log[0]) == (task == "lookup") and ("first_acc" in log[0]) == (task == "pairs")


def test_a_saved_model_is_the_start_of_the_next_run(tmp_path, cache_dir):
    import torch

    saved = tmp_path / "pairs"
    assert probe.main(["--task", "pairs", "--steps", "8", "--stop-at", "3", "--eval", "4", "--cache-dir", str(cache_dir), "--save", str(saved),
                       "--out", str(tmp_path / "p.json")]) == 0
    assert [r["step"] for r in json.loads((tmp_path / "p.json").read_text())["evaluations"]] == [1, 2, 3]  # stopped at 3 of 8
    from m2r.config import ModelConfig
    from m2r.model.load import load_processor

    from m2r.model.load import build_model

    processor = load_processor(ModelConfig(), str(cache_dir))
    loaded = probe.load_init(saved, len(processor.tokenizer))
    torch.manual_seed(0)
    fresh = build_model(ModelConfig(), processor)  # what the probe starts from without --init (its seed 0)
    changed = [not torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), fresh.state_dict().values())]
    assert any(changed)  # the saved model is the trained one, not a rebuild
    with pytest.raises(SystemExit, match="vocabulary"):
        probe.load_init(saved, len(processor.tokenizer) + 1)
    assert probe.main(["--task", "lookup", "--steps", "8", "--eval", "4", "--locate", "1.0", "--cache-dir", str(cache_dir), "--init", str(saved)]) == 0
    with pytest.raises(SystemExit):
        probe.main(["--task", "lookup", "--steps", "8", "--cache-dir", str(cache_dir), "--init", str(tmp_path / "nothing")])


def test_two_values_per_key_print_only_the_first_query_line(tmp_path, cache_dir):
    out = tmp_path / "two.json"
    assert probe.main(["--task", "pairs", "--key-tokens", "2", "--values-per-key", "2", "--steps", "8", "--eval", "2", "--cache-dir", str(cache_dir), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["reference"] == {"key_blind_first": pytest.approx(0.3708, abs=1e-4)}  # the whole score's 0.553 does not hold here
