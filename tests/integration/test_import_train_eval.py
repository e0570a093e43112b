"""Plain LLaVA data end to end (issue 11): bare-answer conversations plus every bad row class,
built with `on_bad_sample=skip`, trained with `stage=sft` on what was kept, scored with `stage=eval`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import m2r
from conftest import compose

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "data"))
from test_bad_inputs import ROW_CASES, fixture_dir, png  # noqa: E402

pytestmark = pytest.mark.slow

SHAPES = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def llava_rows(d: Path, prefix: str, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        colour = list(SHAPES)[i % 3]
        (d / f"{prefix}{i}.png").write_bytes(png((56, 56), SHAPES[colour]))
        rows.append({"id": f"{prefix}{i}", "image": f"{prefix}{i}.png",
                     "conversations": [{"from": "human", "value": "<image>\nWhat colour is the picture?"}, {"from": "gpt", "value": colour}]})
    return rows


def test_plain_llava_builds_trains_and_scores(tmp_path, cache_dir):
    d = fixture_dir(tmp_path)
    bad = [row if isinstance(row, bytes) else json.dumps(row).encode() for row, _, _ in ROW_CASES.values()]
    bad = [b.replace(b'"id": "bad"', f'"id": "bad{k}"'.encode()) for k, b in enumerate(bad)]
    train = d / "train.jsonl"
    train.write_bytes(b"\n".join([json.dumps(r).encode() for r in llava_rows(d, "tr", 12)] + bad) + b"\n")
    val = d / "val.jsonl"
    val.write_text("\n".join(json.dumps({k: v for k, v in r.items()}) for r in llava_rows(d, "va", 6)) + "\n")
    data = ["data=jsonl", f"data.train_files=[{train}]", f"data.val_files=[{val}]", "data.samples_per_shard=4", "data.on_bad_sample=skip",
            "data.num_workers=0", "data.batch_size=2"]
    m2r.run(compose(["stage=build", *data], tmp_path, cache_dir))
    manifest = json.loads((tmp_path / "build" / "train" / "manifest.json").read_text())
    assert manifest["count"] == 12 and len(manifest["skipped"]) == len(ROW_CASES)

    summary = m2r.run(compose(["stage=sft", *data, "sft.max_steps=3", "trainer.val_check_interval=3"], tmp_path, cache_dir))["sft"]
    assert summary["steps"] == 3

    preds = tmp_path / "preds.jsonl"
    answers = {f"va{i}": list(SHAPES)[i % 3] if i < 4 else "purple" for i in range(6)}
    preds.write_text("\n".join(json.dumps({"id": k, "response": f"<think>I look.</think><answer>\\boxed{{{v}}}</answer>"}) for k, v in answers.items()) + "\n")
    result = m2r.run(compose(["stage=eval", "benchmark=embedded", *data, f"eval.predictions={preds}"], tmp_path, cache_dir))["eval"]
    metrics = json.loads((tmp_path / "eval" / "embedded" / "metrics.json").read_text())
    assert result["rows"] == 6 and metrics["type/text"] == pytest.approx(4 / 6)
