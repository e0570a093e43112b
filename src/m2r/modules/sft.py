"""`SFTModule`: cold-start supervised fine-tuning (token-level cross-entropy on the response).

The network is built by a factory in `configure_model()`, so FSDP and DeepSpeed ZeRO-3 can
shard it as it is created. Logged: `train/loss`, `train/token_acc`, `train/tokens` (response
tokens in the batch), `val/loss`, `val/token_acc`.
"""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch

from m2r.data.collate import IGNORE


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on the trainable matrices, none on biases and norms."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class SFTModule(L.LightningModule):
    def __init__(
        self,
        model_factory: Callable[[], torch.nn.Module],
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: str = "cosine",  # any name transformers.get_scheduler knows: cosine, linear, constant_with_warmup, ...
        warmup_steps: int = 0,
        loss_chunk: int = 256,  # positions per LM-head chunk: memory only (not keyed)
    ):
        super().__init__()
        if loss_chunk < 1:
            raise ValueError(f"sft.module.loss_chunk={loss_chunk}: at least 1 position per chunk")
        self.save_hyperparameters(ignore=["model_factory"])
        self.loss_chunk = loss_chunk
        self.model_factory = model_factory
        self.model: torch.nn.Module | None = None

    def configure_model(self) -> None:
        from m2r.training import shard_model

        if self.model is None:
            # from_pretrained returns eval mode, which Lightning would keep (no dropout in training).
            self.model = shard_model(self, self.model_factory().train())

    def forward(self, **batch) -> torch.Tensor:
        return self.model(**batch)

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        """Mean cross-entropy over the response tokens (as the model's own loss), with the LM head and log-softmax run a
        chunk of positions at a time and recomputed in backward: no [B, T, V] float32 logits are materialised or kept."""
        from m2r.rl.core import sequence_logps
        from m2r.training import same_media_across_ranks

        same_media_across_ranks(self, "pixel_values" in batch, "pixel_values_videos" in batch, f"SFT {stage} step {self.global_step}")
        labels = batch["labels"]
        ids, attn = batch["input_ids"], batch["attention_mask"]
        extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
        target = labels[:, 1:]  # [B, T-1], predicted from positions 0 .. T-2
        mask = target != IGNORE
        logps, hits = sequence_logps(self.model, ids, attn, extra, target.masked_fill(~mask, 0), target.shape[1], 1.0, self.loss_chunk)
        counted = mask.sum()
        loss = -(logps * mask).sum() / counted.clamp(min=1)
        correct = (hits & mask).sum()
        bs = ids.shape[0]
        sync = stage != "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, sync_dist=sync)
        self.log(f"{stage}/token_acc", correct.float() / counted.clamp(min=1), batch_size=bs, sync_dist=sync)
        if stage == "train":
            self.log("train/tokens", counted.float(), reduce_fx="sum", batch_size=bs)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def configure_optimizers(self):
        from transformers import get_scheduler

        optimizer = torch.optim.AdamW(decay_groups(self.model, self.hparams.weight_decay), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
        total = self.trainer.max_steps
        if total is None or total < 0:
            raise ValueError("SFT streams its data: set trainer.max_steps (the LR schedule and the stream length depend on it)")
        sched = get_scheduler(self.hparams.scheduler, optimizer, num_warmup_steps=self.hparams.warmup_steps, num_training_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
