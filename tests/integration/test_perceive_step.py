"""The `perceive` step through the real config: SFT starts from its export, its settings key SFT's output,
it is absent when off, and a killed warm-up resumes on the batches an uninterrupted one takes."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

import m2r
from conftest import FAST, compose
from m2r import stepkeys

pytestmark = pytest.mark.slow

SMALL = ["stage=sft", *FAST, "data.tasks=[spatial/count,spatial/depth]", "perceive.objects=[1,3]", "trainer.val_check_interval=100", "trainer.limit_val_batches=0"]


def _weights(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(folder).state_dict()


def test_sft_starts_from_the_warm_up_and_its_key_follows_it(tmp_path, cache_dir, monkeypatch):
    run = tmp_path / "run"
    # SFT with a learning rate too small to move a weight: its export is the warm-up's, not model.*'s random init
    cfg = compose([*SMALL, "perceive.max_steps=3", "sft.module.lr=1e-12", "sft.module.warmup_steps=0"], run, cache_dir)
    import m2r.pipeline

    looked, look_test = [], m2r.pipeline._look_test
    monkeypatch.setattr(m2r.pipeline, "_look_test", lambda c, mc, hf, p, **kw: looked.append(str(hf)) or look_test(c, mc, hf, p, **kw))
    out = m2r.run(cfg)
    assert looked == [str(run / "perceive" / "hf"), str(run / "sft" / "hf")]  # each step's look reads its own export
    assert out["perceive"]["steps"] == 3 and (run / "perceive" / "hf" / "COMPLETE").exists()
    warm, sft = _weights(run / "perceive" / "hf"), _weights(run / "sft" / "hf")
    assert warm.keys() == sft.keys()
    assert all(torch.allclose(warm[k], sft[k], atol=1e-6) for k in warm)
    # SFT's look test reads the same scenes with the same weights: the warm-up's figures, to the digit
    look, warm_look = out["sft"]["look"], out["perceive"]
    assert look["readings"] > 0 and look["namings"] > 0
    assert {k: v for k, v in look.items() if k.startswith(("reading_", "naming_"))} == {k: v for k, v in warm_look.items() if k.startswith(("reading_", "naming_"))}
    from m2r.model.load import build_model, load_processor

    mc = m2r.pipeline.OmegaConf.to_object(cfg.model)
    scratch = build_model(mc, load_processor(mc, str(cache_dir))).state_dict()
    assert scratch.keys() == warm.keys()
    moved = [k for k in warm if not torch.allclose(warm[k], scratch[k])]
    assert len(moved) > len(warm) // 2  # the warm-up trained (and SFT did not start from scratch)

    recorded = json.loads((run / "sft" / "key.json").read_text())["config"]["inputs"]
    assert recorded["perceive"] == json.loads((run / "perceive" / "key.json").read_text())["key"]
    k3 = stepkeys.step_key(cfg, "sft")[0]

    # off: no perceive folder, and SFT's key reads no perceive input
    off_run = tmp_path / "off"
    off = compose([*SMALL, "perceive.max_steps=0"], off_run, cache_dir)
    assert "perceive" not in stepkeys.step_key(off, "sft")[1]["inputs"] and stepkeys.step_key(off, "sft")[0] != k3
    off_out = m2r.run(off)
    assert off_out["perceive"] == {"skipped": True} and "look" not in off_out["sft"]  # nothing to compare SFT's reading with
    assert not (off_run / "perceive").exists() and (off_run / "sft" / "hf" / "COMPLETE").exists()


def test_sft_without_its_warm_up_says_how_to_run_it(tmp_path, cache_dir):
    cfg = compose([*SMALL, "perceive.max_steps=3", "stage.steps=[build,sft]"], tmp_path / "run", cache_dir)
    with pytest.raises(FileNotFoundError, match="perceive.max_steps=3 but the perception warm-up has no finished output"):
        m2r.run(cfg)


def test_killed_warm_up_resumes_on_the_uninterrupted_batches(tmp_path, cache_dir, monkeypatch):
    import m2r.data.perceive
    import m2r.training
    from test_sft_resume import IdCollator, make_recorder

    monkeypatch.setattr(m2r.data.perceive, "SFTCollator", IdCollator)
    seen: list[tuple[int, list[int]]] = []
    make_trainer = m2r.training.make_trainer

    def recording(*a, extra_callbacks=None, **k):
        return make_trainer(*a, extra_callbacks=[*(extra_callbacks or []), make_recorder(seen)], **k) if a[2] == "perceive" else make_trainer(*a, extra_callbacks=extra_callbacks, **k)

    monkeypatch.setattr(m2r.training, "make_trainer", recording)
    common = [*SMALL, "stage.steps=[perceive]", "perceive.max_steps=5", "trainer.accumulate_grad_batches=2", "callbacks.checkpoint.every_n_train_steps=1"]
    m2r.run(compose(common, tmp_path / "straight", cache_dir))
    straight, seen[:] = list(seen), []
    assert [s for s, _ in straight] == [s for s in range(1, 6) for _ in range(2)]
    assert len({i for _, b in straight for i in b}) == 20  # 10 batches of 2 fresh scenes

    run_dir = tmp_path / "resumed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        m2r.run(compose([*common, "+callbacks.crash._target_=conftest.CrashAfter", "+callbacks.crash.step=3"], run_dir, cache_dir))
    crashed, seen[:] = list(seen), []
    last = torch.load(run_dir / "perceive" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2 and last["PerceiveDataModule"]["train_batches"] == 4
    assert m2r.run(compose(common, run_dir, cache_dir))["perceive"]["steps"] == 5
    assert crashed == straight[:6] and seen[0][0] == 3
    assert [b for s, b in crashed if s <= 2] + [b for _, b in seen] == [b for _, b in straight]


def test_new_generators_make_a_new_warm_up_for_the_tiny_model(tmp_path, cache_dir, monkeypatch):
    """The tiny model's tokenizer is trained on the generators' text, so a generators' version bump keys a new warm-up
    (reusing the old one would pair its weights with another tokenizer)."""
    from m2r.data import tasks

    cfg = compose([*SMALL, "perceive.max_steps=3"], tmp_path, cache_dir)
    before = stepkeys.step_key(cfg, "perceive")[0]
    monkeypatch.setattr(tasks, "EMBEDDED_VERSION", tasks.EMBEDDED_VERSION + 1)
    assert stepkeys.step_key(cfg, "perceive")[0] != before


def test_the_warm_up_trains_every_weight_whatever_sft_freezes(tmp_path, cache_dir):
    """model.freeze_* and model.lora are SFT's choices: the warm-up of a model from scratch ignores them (same key, and
    the vision tower moves during the warm-up of a run that freezes it for SFT)."""
    plain = compose([*SMALL, "perceive.max_steps=2"], tmp_path / "a", cache_dir)
    frozen = compose([*SMALL, "perceive.max_steps=2", "model.freeze_vision=true", "model.freeze_projector=true", "stage.steps=[perceive]"], tmp_path / "b", cache_dir)
    assert stepkeys.step_key(plain, "perceive")[0] == stepkeys.step_key(frozen, "perceive")[0]
    assert stepkeys.step_key(plain, "sft")[0] != stepkeys.step_key(frozen, "sft")[0]
    m2r.run(frozen)
    from m2r.model.load import build_model, load_processor

    mc = m2r.pipeline.OmegaConf.to_object(frozen.model)
    scratch = build_model(mc, load_processor(mc, str(cache_dir))).state_dict()
    warm = _weights(tmp_path / "b" / "perceive" / "hf")
    vision = [k for k in warm if ".visual." in k or k.startswith("visual.") or "model.visual" in k]
    assert vision and all(not torch.equal(warm[k], scratch[k]) for k in vision if k.endswith("weight") and "norm" not in k)


def test_a_pretrained_checkpoint_skips_the_warm_up(tmp_path, cache_dir):
    """`python run.py model=qwen2_5_vl model.path=...` composes on experiment=tiny_m2 (2000 warm-up steps): a checkpoint
    that can already see skips the warm-up, and its SFT key reads no perceive output."""
    from m2r.checks import check_config

    cfg = compose([*SMALL, "model=qwen2_5_vl", "model.path=/ckpt/Qwen2.5-VL-7B-Instruct", "perceive.max_steps=5"], tmp_path, cache_dir)
    check_config(cfg)
    assert not stepkeys.perceive_on(cfg) and stepkeys.prepare(cfg, "perceive") is None
    assert m2r.pipeline.step_perceive(cfg) == {"skipped": True}
    assert "perceive" not in stepkeys.step_key(cfg, "sft")[1]["inputs"] and not (tmp_path / "perceive").exists()


def test_a_random_shape_model_keys_its_warm_up_by_the_tokenizer(tmp_path, cache_dir, monkeypatch):
    from m2r.data import tasks

    cfg = compose([*SMALL, "model=qwen2_5_vl_3b_random", "perceive.max_steps=3"], tmp_path, cache_dir)
    key, parts = stepkeys.step_key(cfg, "perceive")
    assert "tokenizer" in parts and parts["generators"] == tasks.EMBEDDED_VERSION
    monkeypatch.setattr(tasks, "EMBEDDED_VERSION", tasks.EMBEDDED_VERSION + 1)
    assert stepkeys.step_key(cfg, "perceive")[0] != key


def test_sft_rehearsal_mixes_perception_samples_into_sft_and_keys_it(tmp_path, cache_dir):
    from m2r.data.datamodule import SFTDataModule
    from m2r.model.load import load_processor

    small = [*SMALL, "perceive.max_steps=0", "perceive.image_size=112", "quality.enabled=false"]
    off, zero = compose(small, tmp_path / "off", cache_dir), compose([*small, "sft.rehearsal=0"], tmp_path / "zero", cache_dir)
    from omegaconf import open_dict

    with open_dict(off.sft):
        del off.sft["rehearsal"]  # a config from before the field
    on = compose([*small, "sft.rehearsal=6"], tmp_path / "on", cache_dir)
    assert stepkeys.step_key(zero, "sft")[0] == stepkeys.step_key(off, "sft")[0]  # 0 is no rehearsal: earlier SFT outputs keep their keys
    assert stepkeys.step_key(on, "sft")[0] != stepkeys.step_key(off, "sft")[0]
    wider = compose([*small, "sft.rehearsal=6", "perceive.objects=[2,3]"], tmp_path / "w", cache_dir)
    assert stepkeys.step_key(wider, "sft")[0] != stepkeys.step_key(on, "sft")[0]  # the scenes it draws are in the key

    out = m2r.run(on)
    assert out["sft"]["steps"] == 2
    root = tmp_path / "on" / "sft" / "rehearsal"
    manifest = json.loads((root / "train" / "manifest.json").read_text())
    assert manifest["count"] == 6 and list(manifest["tasks"]) == ["perceive/list"] and manifest["rehearsal"]["objects"] == [1, 3]
    # the SFT stream is the tasks' traces and the rehearsal's listings together
    dm = SFTDataModule(tmp_path / "on" / "build", load_processor(m2r.pipeline.OmegaConf.to_object(on.model), str(cache_dir)), batch_size=2,
                       shuffle_buffer=0, extra_train_roots=[root])
    dm.setup()
    ids = [s.id for s, _ in itertools.islice(dm.train_dataloader().dataset, 14)]
    assert sum(i.startswith("perceive-rehearsal-") for i in ids) == 6 and len(set(ids)) == 14  # 8 traces (2 tasks x 4) + 6, each once

    with pytest.raises(ValueError, match=r"sft.rehearsal=-1: must be"):
        m2r.run(compose([*small, "sft.rehearsal=-1"], tmp_path / "bad", cache_dir))
    gone = compose([*small, "sft.rehearsal=6"], tmp_path / "gone", cache_dir)
    with pytest.raises(FileNotFoundError, match="holds no perception samples: run SFT through the pipeline"):
        m2r.pipeline.step_sft(gone)  # called without the pipeline's rank-0 preparation
