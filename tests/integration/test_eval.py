"""stage=eval on the real MATH-V and We-Math files: scoring predictions without a model, and the
tiny model end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import m2r
from conftest import N_TASKS, compose

BENCH = Path(__file__).resolve().parents[2].parent / "shared" / "benchmarks"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (BENCH / "mathvision").exists(), reason="../shared/benchmarks not present")]


def m2(answer: str) -> str:
    return f"<think>Reading the figure.</think><answer>\\boxed{{{answer}}}</answer>"


def test_mathvision_predictions_without_model(tmp_path, cache_dir):
    rows = [json.loads(l) for l in (BENCH / "mathvision" / "testmini.jsonl").read_text().splitlines()]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps({"id": r["id"], "response": m2(r["answer"])}) for r in rows[:-4]) + "\n")  # 4 rows missing
    cfg = compose(["stage=eval", "benchmark=mathvision", f"benchmark.root={BENCH / 'mathvision'}", f"eval.predictions={preds}"], tmp_path, cache_dir)
    summary = m2r.run(cfg)["eval"]
    assert summary["rows"] == 304 and summary["score"] == pytest.approx(300 / 304)  # missing rows count as wrong
    out = tmp_path / "eval" / "mathvision"
    assert len((out / "samples.jsonl").read_text().splitlines()) == 304
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"]["count"] == 304 and "counting" in metrics["accuracy"]
    assert metrics["responses"]["answered"] == pytest.approx(300 / 304) and metrics["responses"]["repetition"] == 0.0
    table = (out / "table.md").read_text()
    assert "M2-Reasoning-7B (paper) | 31.5" in table and "Qwen2.5-VL-7B (paper) | 25.4" in table and "98.7" in table


def test_wemath_predictions_four_dimensional(tmp_path, cache_dir):
    rows = json.loads((BENCH / "wemath" / "testmini.json").read_text())
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps({"ID": r["ID"], "key": r["key"], "response": f"<Answer>: <<{r['answer']}>>"}) for r in rows) + "\n")
    cfg = compose(["stage=eval", "benchmark=wemath", f"benchmark.root={BENCH / 'wemath'}", f"eval.predictions={preds}"], tmp_path, cache_dir)
    assert m2r.run(cfg)["eval"]["score"] == 1.0
    fd = json.loads((tmp_path / "eval" / "wemath" / "metrics.json").read_text())["four_dimensional"]
    assert fd["CM_strict_count"] == 525 and fd["n_problems"] == 525


def test_bad_predictions_file_says_what_is_wrong(tmp_path, cache_dir):
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "4", "response": "x"}\n{"response": "no id"}\n')
    cfg = compose(["stage=eval", "benchmark=mathvision", f"benchmark.root={BENCH / 'mathvision'}", f"eval.predictions={preds}"], tmp_path, cache_dir)
    with pytest.raises(ValueError, match=r"line 2: missing field\(s\) \['id'\]"):
        m2r.run(cfg)
    with pytest.raises(ValueError, match="benchmark.root is required"):
        m2r.run(compose(["stage=eval", "benchmark=mathvision"], tmp_path, cache_dir))


@pytest.mark.parametrize("prompt", ["official", "m2"])
def test_tiny_model_end_to_end(tmp_path, cache_dir, prompt):
    cfg = compose(["stage=eval", "benchmark=mathvision", f"benchmark.root={BENCH / 'mathvision'}", f"benchmark.prompt={prompt}",
                   "eval.limit=4", "eval.max_new_tokens=8", "eval.batch_size=2"], tmp_path, cache_dir)
    summary = m2r.run(cfg)["eval"]
    assert summary["rows"] == 4
    samples = [json.loads(l) for l in (tmp_path / "eval" / "mathvision" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and all(isinstance(s["response"], str) for s in samples)


def test_vsibench_frames_with_tiny_model(tmp_path, cache_dir):
    """Video questions through stage=eval: frames sampled from pre-extracted frame folders, several images per prompt."""
    from PIL import Image

    rows = [{"id": i, "dataset": "scannet", "scene_name": "s0", "question_type": t, "question": "How many chairs?" if t == "object_counting" else "Which?",
             "options": None if t == "object_counting" else ["A. x", "B. y"], "ground_truth": "3" if t == "object_counting" else "A"}
            for i, t in enumerate(["object_counting", "object_rel_distance"])]
    root = tmp_path / "vsi"
    (root / "frames" / "scannet" / "s0").mkdir(parents=True)
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for k in range(6):
        Image.new("RGB", (64, 64), (k * 40, 90, 0)).save(root / "frames" / "scannet" / "s0" / f"{k}.jpg")
    cfg = compose(["stage=eval", "benchmark=vsibench", f"benchmark.root={root}", f"benchmark.frames_dir={root / 'frames'}", "benchmark.num_frames=3",
                   "eval.max_new_tokens=6"], tmp_path, cache_dir)
    summary = m2r.run(cfg)["eval"]
    assert summary["rows"] == 2
    assert "OC" in (tmp_path / "eval" / "vsibench" / "table.md").read_text()


def test_embedded_benchmark_end_to_end(tmp_path, cache_dir):
    """stage=build, then stage=eval benchmark=embedded: the run's own held-out set, scored from predictions and by the tiny model."""
    from conftest import FAST

    m2r.run(compose(["stage=build", *FAST], tmp_path, cache_dir))
    from m2r.data.shards import sample_stream, shard_urls

    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps({"id": s.id, "response": s.cot}) for s, _ in sample_stream(shard_urls(tmp_path / "build", "val"), shuffle_shards=False)) + "\n")
    summary = m2r.run(compose(["stage=eval", "benchmark=embedded", *FAST, f"eval.predictions={preds}"], tmp_path, cache_dir))["eval"]
    assert summary["rows"] == N_TASKS and summary["score"] == 1.0
    summary = m2r.run(compose(["stage=eval", "benchmark=embedded", *FAST, "eval.max_new_tokens=8"], tmp_path, cache_dir))["eval"]
    assert summary["rows"] == N_TASKS and 0.0 <= summary["score"] <= 1.0
    assert "spatial" in (tmp_path / "eval" / "embedded" / "table.md").read_text()


def test_embedded_scores_imported_data_by_answer_type(tmp_path, cache_dir):
    """data=jsonl with text, expression and choice answers: stage=eval benchmark=embedded reports the
    exact-match accuracy of text answers (not 0 from a number reward), per answer type."""
    rows = [{"id": f"t{i}", "task": "general/yesno", "question": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no", "answer_type": "text"} for i in range(10)]
    rows += [{"id": "e0", "task": "general/algebra", "question": "Half?", "answer": "\\frac{1}{2}", "answer_type": "expression"},
             {"id": "e1", "task": "general/algebra", "question": "Third?", "answer": "\\frac{1}{3}", "answer_type": "expression"},
             {"id": "c0", "task": "general/quiz", "question": "Pick", "answer": "B", "answer_type": "choice", "choices": ["x", "y"]},
             {"id": "c1", "task": "general/quiz", "question": "Pick", "answer": "A", "answer_type": "choice", "choices": ["x", "y"]}]
    data, train = tmp_path / "val.jsonl", tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train.write_text("\n".join(json.dumps({**r, "id": "train-" + r["id"], "cot": f"<think>t</think><answer>\\boxed{{{r['answer']}}}</answer>"}) for r in rows) + "\n")
    cfg = ["data=jsonl", f"data.train_files=[{train}]", f"data.val_files=[{data}]", "data.samples_per_shard=4"]
    m2r.run(compose(["stage=build", *cfg], tmp_path, cache_dir))

    def m2(a: str) -> str:
        return f"<think>I check.</think><answer>\\boxed{{{a}}}</answer>"

    answers = {f"t{i}": ("Yes" if i % 2 == 0 else "no") if i < 6 else "maybe" for i in range(10)}  # 6 of 10 right, "Yes" by case
    answers |= {"e0": "0.5", "e1": "0.5", "c0": "y", "c1": "B"}  # expression by value, choice by option text
    preds = tmp_path / "preds.jsonl"
    preds.write_text("\n".join(json.dumps({"id": k, "response": m2(v)}) for k, v in answers.items()) + "\n")
    summary = m2r.run(compose(["stage=eval", "benchmark=embedded", *cfg, f"eval.predictions={preds}"], tmp_path, cache_dir))["eval"]
    metrics = json.loads((tmp_path / "eval" / "embedded" / "metrics.json").read_text())
    assert summary["rows"] == 14
    assert metrics["type/text"] == pytest.approx(0.6) and metrics["task/general/yesno"] == pytest.approx(0.6)
    assert metrics["type/expression"] == pytest.approx(0.5) and metrics["type/choice"] == pytest.approx(0.5)
    assert metrics["overall"] == pytest.approx((0.6 + 0.5 + 0.5) / 3)
