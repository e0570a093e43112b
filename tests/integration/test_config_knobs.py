"""One source of truth per knob (issue 11, item 4): each config defect a user hit is now either an
error at composition that names the key, or a setting that means what it says."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import CONF, compose
from m2r.checks import ConfigError, check_config


@pytest.mark.parametrize("override, key", [
    ("sft.module.lr=abc", "sft.module.lr"),
    ("grpo.max_steps=ten", "grpo.max_steps"),
    ("grpo.prompts_per_step=-2", "grpo.prompts_per_step"),
    ("data.batch_size=0", "data.batch_size"),
    ("reward.ednm.lam=-5", "reward.ednm.lam"),
    ("reward.ednm.lam=nan", "reward.ednm.lam"),
    ("sft.max_steps=2.5", "sft.max_steps"),
    ("grpo.module.top_p=1.5", "grpo.module.top_p"),
    ("grpo.module.temperature=0", "grpo.module.temperature"),
    ("algo.G=1", "algo.G"),
    ("algo.beta=-0.01", "algo.beta"),
    ("sft.module.betas=[0.9]", "sft.module.betas"),
    ("sft.module.betas=[0.9,1.5]", "sft.module.betas[1]"),
    ("curriculum.tol=0.7", "curriculum.tol"),
    ("quality.threshold=2", "quality.threshold"),
    ("eval.limit=0", "eval.limit"),
    ("callbacks.checkpoint.every_n_train_steps=-1", "callbacks.checkpoint.every_n_train_steps"),
    ("model.min_pixels=50000", "model.min_pixels"),  # above max_pixels
    ("trainer.max_steps=true", "trainer.max_steps"),
    ("sft.module.betas=null", "sft.module.betas"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval"),
    ("trainer.limit_val_batches=-1", "trainer.limit_val_batches"),
    ("trainer.devices=0", "trainer.devices"),
    ("model.tiny.initializer_range=0", "model.tiny.initializer_range"),
    ("quality.weights.structural=-5", "quality.weights.structural"),
    ("algo.aggregation=bogus", "algo.aggregation"),
    ("curriculum.end_policy=bogus", "curriculum.end_policy"),
    ("curriculum.order=bogus", "curriculum.order"),
    ("rollout.cache=paged", "rollout.cache"),
    ("rollout.compile=true", "rollout.compile"),  # over the default dynamic cache
])
def test_bad_numeric_value_names_its_key(override, key, tmp_path):
    cfg = compose([override], tmp_path, tmp_path)
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    assert str(e.value).startswith(key + "=") or str(e.value).startswith(key.replace("max", "min") + "=")


def test_zero_turns_clipping_and_interval_checkpoints_off(tmp_path):
    check_config(compose(["trainer.gradient_clip_val=0", "callbacks.checkpoint.every_n_train_steps=0"], tmp_path, tmp_path))


def test_every_shipped_option_passes_the_checks(tmp_path):
    for group in ("stage", "model", "data", "reward", "algo", "curriculum", "mix", "trainer", "strategy", "callbacks", "experiment"):
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "schema"):
            check_config(compose([f"{group}={option}"], tmp_path, tmp_path))


@pytest.mark.parametrize("override, message", [
    ("+grpo.module.lrr=1e-5", "grpo.module.lrr: GRPOModule has no argument 'lrr'"),
    ("+sft.module.max_steps=10", "sft.module.max_steps: SFTModule has no argument 'max_steps'"),
    ("+grpo.module.seed=3", "grpo.module.seed: set by seed"),
    ("+grpo.module.max_grad_norm=1", "grpo.module.max_grad_norm: set by trainer.gradient_clip_val"),
    ("sft.module._target_=m2r.modules.sft.NoSuchModule", "sft.module._target_=m2r.modules.sft.NoSuchModule: cannot import"),
    ("+grpo.module.G=8", "grpo.module.G: set by the algo/ group (algo.G=4 wins)"),
    ("+sft.module._partial_=true", "sft.module._partial_: the stage builds the module itself"),
    ("+grpo.module.betas=[0.9,2.0]", "grpo.module.betas[1]=2.0"),
])
def test_module_keys_are_constructor_arguments(override, message, tmp_path):
    """Item 5: `sft.module` / `grpo.module` are instantiated; a key the constructor does not take fails at composition."""
    with pytest.raises(ConfigError) as e:
        check_config(compose([override], tmp_path, tmp_path))
    assert str(e.value).startswith(message)


def test_modules_are_built_from_their_config(tmp_path):
    """The YAML keys reach the constructor unchanged (hparams), with the algo/ keys merged into GRPO's."""
    from hydra.utils import instantiate

    from m2r.modules.grpo import GRPOModule
    from m2r.modules.sft import SFTModule

    cfg = compose(["sft.module.lr=3e-3", "sft.module.betas=[0.8,0.95]", "grpo.module.top_p=0.9", "algo=dapo"], tmp_path, tmp_path)
    check_config(cfg)
    sft = instantiate(cfg.sft.module, lambda: None, _convert_="all")
    assert isinstance(sft, SFTModule) and sft.hparams.lr == 3e-3 and list(sft.hparams.betas) == [0.8, 0.95]
    grpo = instantiate(cfg.grpo.module, lambda: None, None, None, None, **cfg.algo, seed=5, _convert_="all")
    assert isinstance(grpo, GRPOModule) and grpo.hparams.top_p == 0.9 and grpo.hparams.eps_high == 0.28 and grpo.hparams.seed == 5
    assert set(cfg.sft.module) - {"_target_"} <= set(sft.hparams) and set(cfg.grpo.module) - {"_target_"} <= set(grpo.hparams)


def test_dapo_with_the_m2_callbacks_has_no_kl_and_no_eq6(tmp_path):
    """The KL peak is algo.beta (DAPO: 0), Eq. 6 is algo.adv_reweighting (DAPO: off), whatever the callbacks."""
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from m2r.modules.grpo import GRPOModule

    cfg = compose(["algo=dapo", "callbacks=m2"], tmp_path, tmp_path)
    check_config(cfg)
    kl = instantiate(cfg.callbacks.kl_annealing)
    module = instantiate(cfg.grpo.module, lambda: None, None, None, None, **cfg.algo)  # as step_grpo builds it
    assert isinstance(module, GRPOModule) and module.adv_weight_sigma is None
    kl.on_train_batch_start(SimpleNamespace(global_step=0, max_steps=10), module, None, 0)
    assert module.kl_coef == 0.0 and kl.last["beta_max"] == 0.0

    cfg = compose(["algo=grpo", "callbacks=m2"], tmp_path, tmp_path)  # the paper's GRPO: both on, peak from algo.beta
    module = instantiate(cfg.grpo.module, lambda: None, None, None, None, **cfg.algo)
    assert module.adv_weight_sigma == 4.0
    kl = instantiate(cfg.callbacks.kl_annealing)
    kl.on_train_batch_start(SimpleNamespace(global_step=0, max_steps=10), module, None, 0)
    assert module.kl_coef == pytest.approx(0.01)
    kl.on_train_batch_start(SimpleNamespace(global_step=5, max_steps=10), module, None, 0)
    assert module.kl_coef == pytest.approx(0.005)
    assert "beta_max" not in cfg.callbacks.kl_annealing  # no second place to set the peak


def test_kl_floor_above_the_peak_is_an_error(tmp_path):
    cfg = compose(["algo=dapo", "callbacks=m2", "callbacks.kl_annealing.beta_min=0.01"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match="beta_min=0.01 exceeds algo.beta=0.0"):
        check_config(cfg)


def test_a_route_must_name_its_accuracy(tmp_path):
    cfg = compose(["+reward.routes=[{task: '*', answer_type: '*', weights: {format: 1.0}}]"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"reward.routes\[\d+\] .* names no accuracy function"):
        check_config(cfg)
    from m2r.rewards.router import RewardRouter

    with pytest.raises(ValueError, match="names no accuracy function"):
        RewardRouter(functions={}, routes=[{"task": "*", "answer_type": "*", "weights": {"format": 1.0}}])
    cfg = compose(["reward=format_only"], tmp_path, tmp_path)  # format as accuracy, said explicitly: allowed
    check_config(cfg)


def test_a_model_path_no_model_config_reads_is_an_error(tmp_path):
    cfg = compose(["stage=grpo", f"model.path={tmp_path}"], tmp_path, tmp_path)
    with pytest.raises(ConfigError, match=r"model.path=.* is set but model=tiny_qwen2_5_vl \(source=tiny\) does not read it.*model=qwen2_5_vl"):
        check_config(cfg)
    check_config(compose(["model=qwen2_5_vl", f"model.path={tmp_path}"], tmp_path, tmp_path))


def test_grpo_without_sft_output_refuses_random_weights_unless_scratch(tmp_path, cache_dir):
    from m2r.pipeline import step_grpo

    cfg = compose(["stage=grpo", "data.train_per_task=1", "data.rl_per_task=1", "data.val_per_task=1", "data.test_per_task=1"], tmp_path, cache_dir)
    with pytest.raises(FileNotFoundError, match="GRPO would start from random weights.*grpo.init=scratch"):
        step_grpo(cfg)
    cfg = compose(["stage=grpo", f"grpo.init={tmp_path / 'nowhere'}"], tmp_path, cache_dir)
    with pytest.raises(FileNotFoundError, match="no Hugging Face checkpoint there"):
        step_grpo(cfg)
    with pytest.raises(ConfigError, match="grpo.init=null"):
        check_config(compose(["grpo.init=null"], tmp_path, cache_dir))


def _fake_ckpt(path: Path, step: int) -> None:
    torch.save({"global_step": step, "state_dict": {"w": torch.zeros(1000)}}, path)


def test_corrupt_last_ckpt_falls_back_to_the_newest_intact(tmp_path, caplog):
    import os

    from m2r.training import checkpoint_intact, resume_path

    cfg = compose([], tmp_path, tmp_path)
    folder = tmp_path / "sft" / "checkpoints"
    folder.mkdir(parents=True)
    _fake_ckpt(folder / "step000010.ckpt", 10)
    _fake_ckpt(folder / "step000020.ckpt", 20)
    os.utime(folder / "step000010.ckpt", (1, 1))  # older
    _fake_ckpt(folder / "last.ckpt", 30)
    assert resume_path(cfg, tmp_path / "sft") == str(folder / "last.ckpt")
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # killed while saving
    assert not checkpoint_intact(folder / "last.ckpt") and checkpoint_intact(folder / "step000020.ckpt")
    with caplog.at_level(logging.WARNING, logger="m2r.training"):
        assert resume_path(cfg, tmp_path / "sft") == str(folder / "step000020.ckpt")
    assert "last.ckpt cannot be read" in caplog.text and "step000020.ckpt" in caplog.text
    assert torch.load(resume_path(cfg, tmp_path / "sft"), weights_only=False)["global_step"] == 20
    for p in folder.glob("step*.ckpt"):
        p.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(RuntimeError, match="no checkpoint in .* can be read"):
        resume_path(cfg, tmp_path / "sft")
    # a flipped byte inside the pickled record is caught by its CRC
    _fake_ckpt(folder / "last.ckpt", 30)
    with zipfile.ZipFile(folder / "last.ckpt") as z:
        info = next(i for i in z.infolist() if i.filename.endswith("data.pkl"))
    raw = bytearray((folder / "last.ckpt").read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0xFF
    (folder / "last.ckpt").write_bytes(bytes(raw))
    assert not checkpoint_intact(folder / "last.ckpt")
    # DeepSpeed's folder checkpoints: `latest` names the tag folder, whose .pt state files must all read back
    ds = folder / "ds.ckpt"
    (ds / "checkpoint").mkdir(parents=True)
    (ds / "latest").write_text("checkpoint")
    _fake_ckpt(ds / "checkpoint" / "mp_rank_00_model_states.pt", 30)
    _fake_ckpt(ds / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt", 30)
    assert checkpoint_intact(ds)
    (ds / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"\0" * 100)  # rewritten in place, killed mid-write
    assert not checkpoint_intact(ds)
    _fake_ckpt(ds / "checkpoint" / "mp_rank_00_model_states.pt", 30)
    _fake_ckpt(ds / "checkpoint" / "zero_pp_rank_2_mp_rank_00_optim_states.pt", 30)
    assert not checkpoint_intact(ds)  # rank 1's state never written (killed before it saved)
    _fake_ckpt(ds / "checkpoint" / "zero_pp_rank_1_mp_rank_00_optim_states.pt", 30)
    assert checkpoint_intact(ds)
    torch.save({"dp_world_size": 4, "module": None}, ds / "checkpoint" / "mp_rank_00_model_states.pt")
    assert not checkpoint_intact(ds)  # saved by 4 ranks, rank 3's state missing (the ranks there are still 0..2)
    torch.save({"dp_world_size": 3, "module": None}, ds / "checkpoint" / "mp_rank_00_model_states.pt")
    assert checkpoint_intact(ds)
    _fake_ckpt(ds / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt", 30)  # ZeRO-3: model states per rank too
    assert not checkpoint_intact(ds)  # one rank's model states for three ranks' optimizer states
    empty = folder / "empty.ckpt"
    (empty / "checkpoint").mkdir(parents=True)
    assert not checkpoint_intact(empty)
    # a distributed (sharded) checkpoint: torch.distributed.checkpoint's files, then Lightning's meta.pt from rank 0
    import torch.distributed.checkpoint as dcp

    sharded = folder / "sharded.ckpt"
    dcp.save({"w": torch.randn(64, 64), "b": torch.randn(64)}, checkpoint_id=str(sharded))
    assert not checkpoint_intact(sharded)  # meta.pt is written last: not there yet
    torch.save({"global_step": 3}, sharded / "meta.pt")
    assert checkpoint_intact(sharded)
    shard = next(sharded.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert not checkpoint_intact(sharded)


def test_checkpoint_interval_is_capped_to_the_stage(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from m2r.training import make_trainer

    cfg = compose(["callbacks=m2"], tmp_path, tmp_path)  # every_n_train_steps 50, GRPO 40 steps
    assert cfg.callbacks.checkpoint.every_n_train_steps == 50 and cfg.grpo.max_steps == 40
    trainer = make_trainer(cfg, tmp_path / "grpo", "grpo", manual_optimization=True, max_steps=cfg.grpo.max_steps)
    ck = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert ck._every_n_train_steps == 10  # a quarter of the stage: a crash loses at most 10 steps
    trainer = make_trainer(cfg, tmp_path / "sft", "sft", max_steps=500)
    ck = next(c for c in trainer.callbacks if isinstance(c, ModelCheckpoint))
    assert ck._every_n_train_steps == 50  # within the stage: as configured
