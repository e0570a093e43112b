"""Shared fixtures: one tiny processor per session (its tokenizer takes ~15 s to train), tiny shards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("M2R_NO_PROGRESS", "1")

ROOT = Path(__file__).resolve().parents[1]
N_TASKS = 20  # the embedded tasks conf/data/synthetic.yaml lists: 12 on still images, 8 camera walks (checked in test_tasks.py)
CONF = ROOT / "conf"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A cache shared by the session (the trained tiny tokenizer/processor lands here)."""
    path = tmp_path_factory.mktemp("m2r_cache")
    os.environ["M2R_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def model_cfg():
    from m2r.config import ModelConfig

    return ModelConfig()


@pytest.fixture(scope="session")
def processor(model_cfg, cache_dir):
    from m2r.model.load import load_processor

    return load_processor(model_cfg, cache_dir)


@pytest.fixture(scope="session")
def shard_root(tmp_path_factory) -> Path:
    """Embedded shards: 4 train and 2 val samples per task, 2 samples per shard."""
    from m2r.config import DataConfig
    from m2r.data.build import build_data

    root = tmp_path_factory.mktemp("shards")
    build_data(DataConfig(train_per_task=4, val_per_task=2, rl_per_task=4, samples_per_shard=2), root, seed=0)
    return root


def compose(overrides: list[str], run_dir: Path, cache: Path):
    """The real config tree, composed as `python run.py <overrides>` would, with paths in tmp."""
    from hydra import compose as hcompose, initialize_config_dir

    import m2r  # noqa: F401  (registers the structured-config schemas)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # the warm-up off unless a test says perceive.max_steps=N (experiment=tiny_m2's 2000 steps are not a test's)
        return hcompose(config_name="run", overrides=[f"paths.run_dir={run_dir}", f"paths.cache_dir={cache}", "perceive.max_steps=0", *overrides])


# Small, fast settings for end-to-end runs on the tiny model.
FAST = [
    "data.train_per_task=4",
    "data.val_per_task=1",
    "data.rl_per_task=2",
    "data.test_per_task=1",
    "data.samples_per_shard=2",
    "curriculum.scoring.N=2",
    "curriculum.drop_unsolved=false",  # a model trained for 2 steps solves nothing
    "eval.max_new_tokens=16",
    "data.batch_size=4",
    "sft.max_steps=2", "grpo.max_steps=2",
    "perceive.max_steps=0",  # off (experiment=tiny_m2 has 2000); tests that run it say perceive.max_steps=N and get these small settings:
    "perceive.batch_size=2", "perceive.image_size=112", "perceive.val_samples=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "logger=csv",
]


class CrashAfter:
    """A callback that kills training after `step` optimizer steps (for resume tests)."""

    def __new__(cls, step: int):
        import lightning as L

        class _Crash(L.Callback):
            def on_train_batch_end(self, trainer, *args):
                if trainer.global_step >= step:
                    raise RuntimeError(f"simulated crash after step {step}")

        return _Crash()
