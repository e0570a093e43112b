"""The perception warm-up's data (m2r.data.perceive): readings that match the render, a stream that is a pure
function of (seed, rank, batch), resumes at any batch, keeps its order with workers, and differs across ranks; the look
test scores every column and row digit and nothing else."""

from __future__ import annotations

import itertools
import random
import re

import pytest
import torch
from torch.utils.data import DataLoader

from m2r.data.perceive import PerceptionStream, cell, check_objects, listing, perception_sample, reading_accuracy, readings
from m2r.data.scene import sample_scene


def test_listing_counts_then_reads_each_object_left_to_right_at_its_projected_centre():
    for seed in range(20):
        scene, _ = sample_scene(random.Random(seed), 168, n_objects=(2, 6))
        head, *lines = listing(scene)
        n = len(scene.objects)
        assert head == f"I see {n} objects, from left to right:" and len(lines) == n
        assert [line.split(". ", 1)[0] for line in lines] == [str(i) for i in range(1, n + 1)]
        lines = [line.split(". ", 1)[1] for line in lines]
        assert lines == readings(scene)
        names = [line.removeprefix("The ").split(" is in ")[0] for line in lines]
        assert sorted(names) == sorted(o.name for o in scene.objects)
        centre = {o.name: scene.camera.project(o.centre[None])[0] for o in scene.objects}
        assert [centre[n][0] for n in names] == sorted(centre[n][0] for n in names)
        for line, name in zip(lines, names):
            u, v = centre[name]
            assert line == f"The {name} is in column {cell(u, 168)}, row {cell(v, 168)}."


def test_spread_scenes_stand_objects_in_every_row_and_v5_scenes_did_not():
    """sample_scene's default (v6) spreads objects over the image's rows, so that a reading's row carries information;
    v5's scenes (spread=False) stood three objects in four in the middle row."""
    from m2r.data.tasks import _cell

    def row_shares(spread: bool) -> list[float]:
        rng, rows = random.Random(3), [0, 0, 0]
        for _ in range(60):
            scene, _img = sample_scene(rng, 168, spread=spread)
            for o in scene.objects:
                rows[_cell(scene, o)[1] - 1] += 1
        return [r / sum(rows) for r in rows]

    spread, v5 = row_shares(True), row_shares(False)
    assert min(spread) > 0.1 and max(spread) < 0.6, spread
    assert max(v5) > 0.65 and min(v5) < 0.05, v5


def test_cells_are_thirds_of_whole_tokens():
    assert [cell(t, 168) for t in (-5, 0, 55.9, 56, 111.9, 112, 167.9, 168, 500)] == [1, 1, 1, 2, 2, 3, 3, 3, 3]


def test_sample_answer_is_the_count_and_the_trace_lists_every_object():
    sample, images = perception_sample(random.Random(3), 112, (3, 5), locate=0.0)
    n = int(sample.answer)
    assert 3 <= n <= 5 and len(images) == 1 and images[0].size == (112, 112)
    assert sample.cot.startswith(f"<think>\nI see {n} objects, from left to right:\n1. The ")
    assert sample.cot.count(" is in column ") == n and sample.cot.endswith(f"\\boxed{{{n}}}\n</answer>")


def test_a_locating_question_names_objects_and_the_trace_copies_their_listed_readings_in_that_order():
    named_twice = 0
    for seed in range(30):
        sample, _ = perception_sample(random.Random(seed), 112, (2, 5), locate=1.0)
        names = re.search(r"Then say where the (.+) (?:is|are)\.$", sample.question).group(1).split(" and the ")
        listed = dict(re.findall(r"^\d+\. The (\w+ \w+) is in (column \d, row \d)\.$", sample.cot, flags=re.M))
        looked = re.findall(r"^The (\w+ \w+) is in (column \d, row \d)\.$", sample.cot, flags=re.M)
        assert [n for n, _ in looked] == names and all(listed[n] == where for n, where in looked)
        named_twice += len(names) == 2
    assert 0 < named_twice < 30  # one or two objects named
    plain = [perception_sample(random.Random(seed), 112, (2, 5), locate=0.0)[0] for seed in range(10)]
    assert all("Then say" not in s.question and not re.search(r"^The ", s.cot, flags=re.M) for s in plain)


def ids_of(stream, workers: int, n: int) -> list[list[str]]:
    loader = DataLoader(stream, batch_size=stream.batch_size, num_workers=workers, collate_fn=lambda b: [s.id for s, _ in b])
    return list(itertools.islice(loader, n))


def test_stream_resumes_at_any_batch_and_keeps_its_order_with_workers():
    kw = dict(seed=1, rank=0, batch_size=2, image_size=56, objects=(1, 2))
    full = ids_of(PerceptionStream(**kw), 0, 6)
    assert full == [[f"perceive-train-r0-b{b}-{i}" for i in range(2)] for b in range(6)]
    assert ids_of(PerceptionStream(**kw), 2, 6) == full  # two workers, batches in the same order
    assert ids_of(PerceptionStream(**kw, start_batch=4), 2, 2) == full[4:]
    # the samples themselves are a pure function of their ids: the same scene whoever draws it
    a, b = PerceptionStream(**kw), PerceptionStream(**kw, start_batch=3)
    assert a.sample(3, 0)[0].cot == next(iter(b))[0].cot


def test_ranks_and_splits_draw_different_scenes():
    kw = dict(seed=0, batch_size=4, image_size=56, objects=(2, 3))
    r0, r1 = PerceptionStream(rank=0, **kw), PerceptionStream(rank=1, **kw)
    val = PerceptionStream(rank=0, split="val", limit_batches=2, **kw)
    cots = [[s.cot + str(s.meta["objects"]) for s, _ in itertools.islice(st, 8)] for st in (r0, r1, val)]
    assert not set(cots[0]) & set(cots[1]) and not set(cots[0]) & set(cots[2])
    assert len(list(val)) == 8  # limit_batches ends the held-out stream


@pytest.mark.parametrize("bad", [(0, 2), (3, 2), (2, 9)])
def test_bad_object_ranges_say_what_to_give(bad):
    with pytest.raises(ValueError, match=r"perceive.objects=.*1 <= lo <= hi <= 8"):
        check_objects(bad)


class Oracle(torch.nn.Module):
    """Predicts every next token right when it sees a batch's own images, and token 0 when they were swapped."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.w = vocab, torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[bytes, torch.Tensor] = {}

    def forward(self, input_ids, pixel_values, **kw):
        key = input_ids.numpy().tobytes()
        own = self.seen.setdefault(key, pixel_values.clone())  # the first call of a batch has its own images
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if torch.equal(own, pixel_values):
            logits[:, :-1].scatter_(2, input_ids[:, 1:, None], 1.0)
        return type("Out", (), {"logits": logits})()


def test_reading_accuracy_scores_each_column_and_row_and_sees_the_swap(processor):
    samples = [PerceptionStream(0, 0, 6, 112, (1, 3), locate=0.0).sample(0, i) for i in range(6)]
    n_objects = sum(int(s.answer) for s, _ in samples)
    out = reading_accuracy(Oracle(len(processor.tokenizer)), processor, samples, batch_size=3)
    assert out == {"reading_acc": 1.0, "reading_acc_swapped": 0.0, "reading_acc_column": 1.0, "reading_acc_column_swapped": 0.0,
                   "reading_acc_row": 1.0, "reading_acc_row_swapped": 0.0, "readings": 2 * n_objects,
                   "naming_acc_colour": 1.0, "naming_acc_colour_swapped": 0.0, "naming_acc_shape": 1.0, "naming_acc_shape_swapped": 0.0,
                   "namings": n_objects}  # one colour and one shape word per object


class ColourBlind(Oracle):
    """Right on every token but the colour words, which it always says "red" for (a listing-prior model)."""

    def __init__(self, vocab: int, colours: list[int], red: int):
        super().__init__(vocab)
        self.colours, self.red = torch.tensor(colours), red

    def forward(self, input_ids, pixel_values, **kw):
        logits = super().forward(input_ids, pixel_values).logits
        nxt = torch.nn.functional.pad(input_ids[:, 1:], (0, 1))
        at = torch.isin(nxt, self.colours)
        logits[at] = 0.0
        logits[..., self.red][at] = 1.0
        return type("Out", (), {"logits": logits})()


def test_naming_scores_colours_and_shapes_apart(processor):
    from m2r.data.scene import PALETTE

    tok = processor.tokenizer
    ids = {c: tok(" " + c, add_special_tokens=False)["input_ids"][-1] for c in PALETTE}
    samples = [PerceptionStream(0, 0, 6, 112, (2, 3), locate=0.0).sample(0, i) for i in range(6)]
    said = [m for s, _ in samples for m in re.findall(r"^\d+\. The (\w+) ", s.cot, flags=re.M)]
    out = reading_accuracy(ColourBlind(len(tok), list(ids.values()), ids["red"]), processor, samples, batch_size=3)
    assert out["namings"] == len(said) and out["naming_acc_colour"] == pytest.approx(said.count("red") / len(said))
    assert out["naming_acc_shape"] == 1.0 and out["reading_acc"] == 1.0  # the shapes and digits are still right


def test_reading_accuracy_with_batch_size_one_still_swaps_and_none_without_readings(processor):
    samples = [PerceptionStream(0, 0, 4, 112, (1, 2), locate=0.0).sample(0, i) for i in range(4)]
    out = reading_accuracy(Oracle(len(processor.tokenizer)), processor, samples, batch_size=1)
    assert out["reading_acc"] == 1.0 and out["reading_acc_swapped"] == 0.0 and out["readings"] > 0
    empty = reading_accuracy(Oracle(len(processor.tokenizer)), processor, samples[:1])
    assert empty["readings"] == 0 and empty["reading_acc"] is None  # nothing scored is not 0 %


@pytest.mark.parametrize("bad", [[2.5, 4], ["a", 3], [2]])
def test_object_ranges_must_be_two_whole_numbers(bad):
    with pytest.raises(ValueError, match="give two whole numbers"):
        check_objects(bad)


def test_the_report_shows_a_warm_up_only_when_sft_started_from_it(tmp_path):
    import json

    from m2r.report import write_report

    (tmp_path / "perceive").mkdir()
    (tmp_path / "sft").mkdir()
    (tmp_path / "perceive" / "summary.json").write_text(json.dumps({"steps": 5, "reading_acc": 0.7, "reading_acc_swapped": 0.5, "readings": 10}))
    (tmp_path / "sft" / "key.json").write_text(json.dumps({"key": "k", "config": {"inputs": {"build": "b", "perceive": "p"}}}))
    look = {"reading_acc": 0.6, "reading_acc_column": 0.61, "reading_acc_column_swapped": 0.52, "naming_acc_colour": 0.38, "naming_acc_colour_swapped": 0.16}
    (tmp_path / "sft" / "summary.json").write_text(json.dumps({"steps": 7, "look": look}))
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "Perception warm-up" in md and "70.0% right, 50.0% with each image swapped" in md
    assert "| after the warm-up | - / - | - / - | - / - | - / - |" in md  # the warm-up's summary has no per-part figures
    assert "| after SFT (sft.rehearsal=0) | 61.0 / 52.0 | - / - | 38.0 / 16.0 | - / - |" in md  # SFT's look, from sft/summary.json
    (tmp_path / "sft" / "summary.json").write_text(json.dumps({"steps": 7, "look": {"reading_acc": None, "look_error": "OSError: no export"}}))
    (tmp_path / "sft" / "key.json").write_text(json.dumps({"key": "k", "config": {"sft": {"rehearsal": 768}, "inputs": {"build": "b", "perceive": "p"}}}))
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "after SFT (sft.rehearsal=768): the look test failed (OSError: no export)." in md and "| after SFT" not in md  # said, not dropped
    (tmp_path / "sft" / "key.json").write_text(json.dumps({"key": "k2", "config": {"inputs": {"build": "b"}}}))  # SFT redone without it
    write_report(tmp_path)
    assert "Perception warm-up" not in (tmp_path / "report.md").read_text()
