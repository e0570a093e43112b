"""The default GPU precision keeps fp32 master weights (an lr 1e-6 step moves parameters as fp32
training does; bf16-true would lose it), and the one clipping key reaches every strategy."""

from __future__ import annotations

import pytest
import torch
import lightning as L

from conftest import compose
from m2r.model.load import DTYPES
from m2r.training import FSDP2Strategy, grad_clip_settings, make_strategy


class _Step(L.LightningModule):
    """One AdamW step at lr 1e-6 on weights of size ~0.002 (below bf16's resolution there)."""

    def __init__(self, dtype):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((64,), 0.002, dtype=dtype))

    def training_step(self, batch, batch_idx):
        return (self.w.float() * batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-6, weight_decay=0.0)


def _delta(precision: str, dtype: torch.dtype) -> torch.Tensor:
    torch.manual_seed(0)
    module = _Step(dtype)
    before = module.w.detach().float().clone()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 64)), batch_size=4)
    L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=1, logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False).fit(module, data)
    return module.w.detach().float() - before


@pytest.mark.parametrize("model", ["qwen2_5_vl", "m2_reasoning", "qwen2_5_vl_7b_random", "tiny_qwen2_5_vl"])
def test_default_gpu_precision_moves_parameters_like_fp32(model, tmp_path):
    cfg = compose(["trainer=gpu", f"model={model}"], tmp_path, tmp_path)
    default = _delta(cfg.trainer.precision, DTYPES[cfg.model.dtype])  # what trainer=gpu + model=... runs, on the CPU here
    fp32 = _delta("32-true", torch.float32)
    assert fp32.abs().min() > 5e-7  # Adam's first step moves each weight by ~lr
    torch.testing.assert_close(default, fp32, rtol=1e-3, atol=1e-9)
    # the test can fail: bf16 weights stepped directly lose the whole update
    assert _delta("bf16-true", torch.bfloat16).abs().max() == 0


CASES = ["auto", "ddp", "ddp_spawn", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3"]


@pytest.mark.parametrize("strategy", CASES)
@pytest.mark.parametrize("clip", [1.0, 0.25])
def test_one_clipping_key_reaches_every_strategy(strategy, clip, tmp_path):
    if strategy.startswith("deepspeed"):
        pytest.importorskip("deepspeed")
    cfg = compose([f"strategy={strategy}", f"trainer.gradient_clip_val={clip}"], tmp_path, tmp_path)
    for manual in (False, True):  # SFT (automatic optimization), GRPO (manual)
        s = make_strategy(cfg.strategy)
        where = grad_clip_settings(s, cfg.trainer.gradient_clip_val, manual)
        if strategy.startswith("deepspeed"):
            assert s.config["gradient_clipping"] == clip and where == {"trainer": None, "module": None, "deepspeed": clip}
        else:
            assert isinstance(s, FSDP2Strategy) == (strategy == "fsdp")
            assert where == {"trainer": None if manual else clip, "module": clip, "deepspeed": None}
