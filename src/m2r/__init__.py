"""m2r: the M2-Reasoning recipe (cold-start SFT, then GRPO-RLVR) as a Lightning + Hydra codebase."""

from m2r.config import register_configs

register_configs()


def run(cfg):
    """Run the steps of `cfg.stage` (see `m2r.pipeline`)."""
    from m2r.pipeline import run as _run

    return _run(cfg)
