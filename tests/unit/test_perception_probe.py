"""benchmarks/perception_probe.py: its answers agree with the pixels it draws, and it trains end to end."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("perception_probe", Path(__file__).parents[2] / "benchmarks" / "perception_probe.py")
probe = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(probe)


def _columns(img, colour: str) -> np.ndarray:
    px = np.asarray(img)
    return np.nonzero((px == probe.COLOURS[colour]).all(-1))[1]


@pytest.mark.parametrize("lit", [False, True])
def test_answers_match_the_drawn_squares(lit):
    rng = random.Random(3)
    seen = {"colour": set(), "side": set(), "relation": set()}
    for _ in range(60):
        for task in seen:
            sample, (img,) = probe.make_sample(rng, task, 112, lit)
            words = sample.question.split()
            if task == "colour":
                assert len(_columns(img, sample.answer)) == 15 * 15  # the one square, side 112 // 8 (+1 inclusive)
            elif task == "side":
                cols = _columns(img, words[2])
                assert (cols.mean() < 56) == (sample.answer == "left")
            else:
                a, b = words[2], words[-2]
                assert (_columns(img, a).mean() < _columns(img, b).mean()) == (sample.answer == "left")
            assert sample.cot.endswith(f"\\boxed{{{sample.answer}}}\n</answer>")
            seen[task].add(sample.answer)
    assert seen["side"] == seen["relation"] == {"left", "right"} and len(seen["colour"]) == 6
    with pytest.raises(ValueError, match="unknown task"):
        probe.make_sample(rng, "depth", 112, False)


def test_lit_background_is_brighter_on_the_left():
    _, (img,) = probe.make_sample(random.Random(0), "colour", 112, True)
    grey = np.asarray(img)[:, :, 0]
    assert np.median(grey[:, 2]) > np.median(grey[:, -3]) + 80  # medians: the square may cross either column


def test_probe_trains_and_reports(capsys, cache_dir):
    assert probe.main(["--cache-dir", str(cache_dir), "--task", "relation", "--steps", "2", "--every", "1", "--eval", "4", "--batch", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("task relation") and [line.split()[1] for line in out[1:]] == ["0", "1", "2"]
    assert all("with swapped images" in line for line in out[1:])  # the look test beside every score
    losses = [float(line.split()[4]) for line in out[1:]]
    assert losses[-1] < losses[0]  # two AdamW steps lower the held-out loss of a fresh model


def test_scene_tasks_ask_about_the_one_object_drawn():
    from m2r.data.scene import PALETTE, SHAPES, top_shade

    rng = random.Random(5)
    seen = {"scene-colour": set(), "scene-shape": set()}
    for _ in range(40):
        for task in seen:
            sample, (img,) = probe.make_sample(rng, task, 112, False)
            px = np.asarray(img).reshape(-1, 3)
            present = [c for c, rgb in PALETTE.items() if ((px == rgb).all(-1) | (px == top_shade(rgb)).all(-1)).sum() >= 20]
            if task == "scene-colour":
                assert present == [sample.answer]  # one object, and it has the colour answered
            else:
                assert sample.answer in SHAPES and len(present) == 1
            seen[task].add(sample.answer)
    assert len(seen["scene-colour"]) >= 6 and seen["scene-shape"] == set(SHAPES)


def test_probe_init_std_sets_the_model_init(capsys, cache_dir, monkeypatch):
    import m2r.model.load as load

    built = []
    real = load.build_model
    monkeypatch.setattr(load, "build_model", lambda cfg, proc: built.append(cfg.tiny.initializer_range) or real(cfg, proc))
    assert probe.main(["--cache-dir", str(cache_dir), "--task", "scene-colour", "--steps", "1", "--eval", "2", "--batch", "2", "--init-std", "0.05"]) == 0
    assert built == [0.05] and capsys.readouterr().out.startswith("task scene-colour")


@pytest.mark.parametrize("task", ["relation-bins", "relation-px"])
def test_stepwise_readings_match_the_drawn_squares(task):
    import re

    rng = random.Random(7)
    for _ in range(40):
        sample, (img,) = probe.make_sample(rng, task, 112, True)
        lines = re.findall(r"The (\w+) square is (?:in column|centred near x =) (\d+)", sample.cot)
        assert [c for c, _ in lines] == [sample.question.split()[2], sample.question.split()[-2]]
        for colour, value in lines:
            centre = _columns(img, colour).mean()
            if task == "relation-px":
                assert abs(int(value) - centre) <= 1
            else:
                assert int(value) == min(4, int(centre * 4 // 112) + 1)
        if task == "relation-bins":
            assert lines[0][1] != lines[1][1]  # the two squares sit in different columns
        a, b = (int(v) for _, v in lines)
        assert (a < b) == (sample.answer == "left")


def test_stepwise_probe_scores_every_digit_of_the_readings(processor):
    from m2r.data.collate import SFTCollator

    rng = random.Random(2)
    items = [probe.make_sample(rng, "relation-px", 112, True) for _ in range(4)]
    labels = SFTCollator(processor, 512)(items)["labels"][:, 1:]
    mask = probe.scored(labels, probe.scored_ids(processor.tokenizer, "relation-px"), "relation-px")
    assert mask.sum(1).tolist() == [sum(c.isdigit() for c in s.cot) for s, _ in items]  # both x values, every digit
    first = probe.scored(labels, probe.scored_ids(processor.tokenizer, "relation"), "relation")
    assert first.sum(1).tolist() == [1] * 4  # the answer tasks score one word per row


def test_lit_scene_task_is_refused(cache_dir):
    with pytest.raises(SystemExit):
        probe.main(["--cache-dir", str(cache_dir), "--task", "scene-colour", "--lit", "--steps", "1"])


def test_scene_locate_reads_the_named_objects_cell(processor):
    import re

    from m2r.data.collate import SFTCollator
    from m2r.data.scene import PALETTE, top_shade

    rng, agree, items = random.Random(11), 0, []
    for _ in range(30):
        sample, (img,) = probe.make_sample(rng, "scene-locate", 168, False)
        items.append((sample, [img]))
        colour = sample.question.split()[3]
        col, row = (int(x) for x in re.search(r"column (\d), row (\d)", sample.cot).groups())
        px = np.asarray(img)
        ys, xs = np.nonzero((px == PALETTE[colour]).all(-1) | (px == top_shade(PALETTE[colour])).all(-1))
        assert len(xs) >= 20 and sample.answer == f"{col},{row}"
        agree += (int(xs.mean() * 3 // 168) + 1, int(ys.mean() * 3 // 168) + 1) == (col, row)
    assert agree >= 24  # the visible pixels' centre and the projected centre fall in the same third (not always: occlusion, tall objects)
    labels = SFTCollator(processor, 512)(items[:4])["labels"][:, 1:]
    mask = probe.scored(labels, probe.scored_ids(processor.tokenizer, "scene-locate"), "scene-locate")
    assert mask.sum(1).tolist() == [2] * 4  # the column and the row, not their copy in \boxed{}


def test_scene_locate_options_column_objects_ramp_and_size(processor):
    """--column-only reads (and scores) the column alone; --objects bounds the objects drawn; --ramp darkens the whole
    image left to right (objects too); --min-px keeps every object at least that visible."""
    import re

    from m2r.data.collate import SFTCollator
    from m2r.data.scene import PALETTE, top_shade

    rng, items = random.Random(4), []
    for _ in range(12):
        sample, (img,) = probe.make_sample(rng, "scene-locate", 168, False, objects=(2, 2), column_only=True, min_px=250)
        items.append((sample, [img]))
        px = np.asarray(img)
        counts = {c: int(((px == rgb).all(-1) | (px == top_shade(rgb)).all(-1)).sum()) for c, rgb in PALETTE.items()}
        assert sum(n > 0 for n in counts.values()) <= 2 and sample.question.split()[-2] in counts
        colour = sample.question.split()[-2]
        assert counts[colour] >= 250  # visible pixels, base colour and top face (no anti-aliasing, no ramp here)
        assert re.fullmatch(r"<think>\nThe \w+ object is in column [1-4]\.\n</think>\n<answer>\n\\boxed\{[1-4]\}\n</answer>", sample.cot)
    labels = SFTCollator(processor, 512)(items[:4])["labels"][:, 1:]
    mask = probe.scored(labels, probe.scored_ids(processor.tokenizer, "scene-locate"), "scene-locate", column_only=True)
    assert mask.sum(1).tolist() == [1] * 4
    plain = probe.make_sample(random.Random(9), "scene-locate", 168, False)[1][0]
    dark = np.asarray(probe.make_sample(random.Random(9), "scene-locate", 168, False, ramp=0.5)[1][0]).astype(float)
    plain = np.asarray(plain).astype(float)
    ratio = dark.sum((0, 2)) / np.maximum(plain.sum((0, 2)), 1)  # per column
    assert abs(ratio[0] - 1.0) < 0.01 and abs(ratio[-1] - 0.5) < 0.02 and (np.diff(ratio) <= 1e-3).all()
    with pytest.raises(SystemExit):
        probe.main(["--task", "scene-locate", "--objects", "3-2"])


def test_scene_list_reads_every_object_left_to_right(processor):
    import re

    from m2r.data.collate import SFTCollator
    from m2r.data.scene import PALETTE, top_shade

    rng, items, agree, total = random.Random(6), [], 0, 0
    for _ in range(20):
        sample, (img,) = probe.make_sample(rng, "scene-list", 168, False, objects=(2, 4))
        items.append((sample, [img]))
        lines = re.findall(r"The (\w+) (\w+) is in column ([1-4])\.", sample.cot)
        assert 2 <= len(lines) <= 4 and sample.answer == str(len(lines)) and sample.cot.endswith(f"\\boxed{{{len(lines)}}}\n</answer>")
        cols = [int(c) for _, _, c in lines]
        assert cols == sorted(cols)  # left to right
        px = np.asarray(img)
        for colour, _, col in lines:
            if sum(c == colour for c, _, _ in lines) == 1:  # a colour drawn once: its pixels say where it is
                xs = np.nonzero((px == PALETTE[colour]).all(-1) | (px == top_shade(PALETTE[colour])).all(-1))[1]
                agree += int(xs.mean() * 3 // 168) + 1 == int(col)
                total += 1
    assert total >= 30 and agree >= 0.85 * total
    labels = SFTCollator(processor, 512)(items[:4])["labels"][:, 1:]
    mask, rows = probe.reading_masks(labels, processor.tokenizer)
    assert mask.sum(1).tolist() == [int(s.answer) for s, _ in items[:4]] and rows.sum() == 0  # one column per object, not the count


def test_scene_list_rows_read_the_row_too(processor):
    import re

    from m2r.data.collate import SFTCollator

    # 5 and 6 objects too: a count of 5 is not one of the grid's digits, and the last reading is still scored
    rng = random.Random(2)
    items = [probe.make_sample(rng, "scene-list", 168, False, objects=(2, 6), rows=True) for _ in range(12)]
    for sample, _ in items:
        lines = re.findall(r"The \w+ \w+ is in column ([1-3]), row ([1-3])\.", sample.cot)
        assert len(lines) == int(sample.answer)
    assert {int(s.answer) for s, _ in items} & {5, 6} and {int(s.answer) for s, _ in items} & {2, 3}
    labels = SFTCollator(processor, 512)(items)["labels"][:, 1:]
    mask, rows = probe.reading_masks(labels, processor.tokenizer)
    assert mask.sum(1).tolist() == [2 * int(s.answer) for s, _ in items]  # column and row per object, not the count
    assert rows.sum(1).tolist() == [int(s.answer) for s, _ in items]
    # the rows mask marks exactly the row digits: the label tokens after each "row" read the cot's rows in order
    for k, (sample, _) in enumerate(items):
        read = [processor.tokenizer.decode(t).strip() for t in labels[k][rows[k]]]
        assert read == [r for _, r in re.findall(r"column (\d), row (\d)", sample.cot)]
    with pytest.raises(SystemExit):
        probe.main(["--task", "scene-list", "--cells", "10"])
