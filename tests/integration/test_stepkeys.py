"""Step outputs keyed by content (m2r.stepkeys): the same key keeps an output (resume, skip), another
key or an output of unknown origin is removed before the step runs, and keys chain downstream."""

from __future__ import annotations

import json
import logging

from conftest import compose
from m2r import stepkeys


def _fake_output(folder, name="last.ckpt"):
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints" / name).write_text("x")


def test_same_key_keeps_the_output_another_removes_it(tmp_path, caplog):
    cfg = compose(["sft.lr=1e-5"], tmp_path, tmp_path)
    key = stepkeys.prepare(cfg, "sft")
    _fake_output(tmp_path / "sft")  # a crash mid-SFT left a checkpoint
    assert stepkeys.prepare(compose(["sft.lr=1e-5", "trainer.enable_progress_bar=false", "logger=tensorboard"], tmp_path, tmp_path), "sft") == key
    assert (tmp_path / "sft" / "checkpoints" / "last.ckpt").exists()  # same settings that shape SFT: resumable
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        other = stepkeys.prepare(compose(["sft.lr=2e-5"], tmp_path, tmp_path), "sft")
    assert other != key and not (tmp_path / "sft" / "checkpoints").exists()  # never resumed under another learning rate
    assert "sft.lr: 1e-05 -> 2e-05" in caplog.text
    assert json.loads((tmp_path / "sft" / "key.json").read_text())["key"] == other


def test_output_without_a_key_is_redone(tmp_path, caplog):
    cfg = compose([], tmp_path, tmp_path)
    _fake_output(tmp_path / "grpo")
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "step10.jsonl").write_text("{}\n")
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        stepkeys.prepare(cfg, "grpo")
    assert "has no key.json" in caplog.text
    assert not (tmp_path / "grpo" / "checkpoints").exists() and not (tmp_path / "rollouts").exists()


def test_keys_chain_from_the_data_down(tmp_path, caplog):
    cfg = compose([], tmp_path, tmp_path)
    (tmp_path / "build" / "train").mkdir(parents=True)
    (tmp_path / "build" / "train" / "manifest.json").write_text('{"count": 3, "build_key": "a"}')
    keys = {s: stepkeys.prepare(cfg, s) for s in ("quality", "sft", "difficulty", "curriculum", "grpo", "heldout_grpo")}
    assert keys == {s: stepkeys.prepare(cfg, s) for s in keys}  # stable
    (tmp_path / "build" / "train" / "manifest.json").write_text('{"count": 4, "build_key": "b"}')  # a fixed row, rebuilt
    with caplog.at_level(logging.WARNING, logger="m2r.stepkeys"):
        new = {s: stepkeys.prepare(cfg, s) for s in keys}
    assert all(new[s] != keys[s] for s in keys)
    assert "build (its output changed)" in caplog.text
    # A change that only GRPO reads leaves everything upstream as it is.
    cfg2 = compose(["algo.G=8"], tmp_path, tmp_path)
    again = {s: stepkeys.prepare(cfg2, s) for s in keys}
    assert [s for s in keys if again[s] != new[s]] == ["grpo", "heldout_grpo"]
