"""The real config tree: every group option composes; schemas reject typos and wrong types by name."""

from __future__ import annotations

import shutil

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from conftest import CONF, compose

GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml") if p.stem not in ("default",) or g in ("paths", "callbacks")) for g in ("stage", "model", "data", "trainer", "strategy", "logger", "callbacks", "experiment")}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose([f"{group}={option}"], tmp_path, tmp_path)
    OmegaConf.resolve(cfg)
    assert cfg.paths.build_dir == f"{tmp_path}/build"
    OmegaConf.to_object(cfg.model), OmegaConf.to_object(cfg.data)  # the schemas accept every shipped YAML


def test_default_is_the_recipe_on_the_embedded_default(tmp_path):
    cfg = compose([], tmp_path, tmp_path)
    assert cfg.stage.name == "pipeline" and cfg.model.source == "tiny" and cfg.data.source == "synthetic"


@pytest.mark.parametrize("name", ["auto", "ddp", "ddp_spawn", "fsdp"])
def test_cpu_instantiable_strategies(name, tmp_path):
    from m2r.training import make_strategy

    cfg = compose([f"strategy={name}"], tmp_path, tmp_path)
    strategy = make_strategy(cfg.strategy)
    assert strategy == "auto" if name == "auto" else type(strategy).__name__.endswith("Strategy")


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises((ConfigCompositionException, ValidationError), match="max_pixels"):
        compose(["model.max_pixels=lots"], tmp_path, tmp_path)
    with pytest.raises(ConfigCompositionException, match="batch_sise"):
        compose(["data.batch_sise=3"], tmp_path, tmp_path)


def test_misspelt_key_in_a_yaml_fails_at_composition(tmp_path, monkeypatch):
    import conftest

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "model" / "typo.yaml").write_text("defaults:\n  - schema\n  - _self_\nname: typo\nmax_pixel: 100\n")
    monkeypatch.setattr(conftest, "CONF", conf)
    with pytest.raises(ConfigCompositionException) as e:
        conftest.compose(["model=typo"], tmp_path, tmp_path)
    assert "max_pixel" in str(e.value) or "max_pixel" in str(e.value.__cause__)


def test_logger_and_callbacks_instantiate(tmp_path):
    cfg = compose(["logger=csv"], tmp_path, tmp_path)
    assert type(instantiate(cfg.logger, name="sft")).__name__ == "CSVLogger"
    assert {type(instantiate(c)).__name__ for c in cfg.callbacks.values()} == {
        "ModelCheckpoint", "LearningRateMonitor", "RichProgressBar", "CosineKLAnnealing", "RolloutLogger"}
    plain = compose(["callbacks=default"], tmp_path, tmp_path)
    assert {type(instantiate(c)).__name__ for c in plain.callbacks.values()} == {"ModelCheckpoint", "LearningRateMonitor", "RichProgressBar"}
