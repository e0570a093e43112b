"""GPU-only checks: bf16 + flash-attn (or sdpa) SFT steps under each strategy. Skipped without CUDA."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import m2r
from conftest import FAST, compose

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("strategy", ["auto", "ddp_spawn", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3"])
def test_bf16_sft_two_steps(strategy, tmp_path, cache_dir):
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed not installed (pip install -e '.[gpu]')")
    cfg = compose(["stage=sft", *FAST, "trainer=gpu", "trainer.devices=1", f"strategy={strategy}", "model.dtype=bfloat16"], tmp_path, cache_dir)
    summary = m2r.run(cfg)["sft"]
    assert summary["steps"] == 2 and (tmp_path / "sft" / "hf" / "COMPLETE").exists()


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash-attn not installed")
def test_flash_attention_matches_sdpa(processor):
    from m2r.config import ModelConfig
    from m2r.data.collate import SFTCollator
    from m2r.data.tasks import generate
    from m2r.model.load import build_model

    batch = SFTCollator(processor, 512)([generate("spatial/count", 0, 0, "t", 168, 0.0)])
    batch = {k: v.cuda() for k, v in batch.items()}
    losses = {}
    for attn in ("flash_attention_2", "sdpa"):
        model = build_model(ModelConfig(dtype="bfloat16", attn_implementation=attn), processor).cuda()
        batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
        with torch.no_grad():
            losses[attn] = float(model(**batch).loss)
    assert losses["flash_attention_2"] == pytest.approx(losses["sdpa"], rel=2e-2)
