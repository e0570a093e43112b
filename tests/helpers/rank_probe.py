"""A test-only callback for runs with several ranks: after every training step each rank appends
to `<dir>/probe.rank<r>.jsonl` its step, task, sample ids (SFT-style batches: a hash of their tokens and pixels, and `rows`, one hash per row of its unpadded tokens), a hash of all its parameters, and how
many gradient all-reduce rounds DDP ran in that step (a DDP comm hook counts the last bucket of
each round). Loaded through the real CLI: `+callbacks.probe._target_=rank_probe.RankProbe`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch


class RankProbe(L.Callback):
    def __init__(self, dirpath: str):
        self.dir = Path(dirpath)
        self.rounds = 0

    def on_train_start(self, trainer, pl_module) -> None:
        from torch.nn.parallel import DistributedDataParallel

        model = trainer.strategy.model
        if isinstance(model, DistributedDataParallel):
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def counting_hook(state, bucket):
                if bucket.is_last():
                    self.rounds += 1
                return allreduce_hook(state, bucket)

            model.register_comm_hook(None, counting_hook)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        h = hashlib.sha256()
        for name, p in sorted(pl_module.named_parameters()):
            t = p.detach()
            t = t.full_tensor() if hasattr(t, "full_tensor") else t
            h.update(name.encode())
            h.update(t.float().cpu().numpy().tobytes())
        if "samples" in batch:  # a GRPO batch: its task and prompts
            seen = {"task": batch["task"], "ids": [s.id for s, _ in batch["samples"]]}
        else:  # an SFT-style batch of tensors: a hash of its tokens and pixels
            d = hashlib.sha256(batch["input_ids"].cpu().numpy().tobytes())
            if "pixel_values" in batch:
                d.update(batch["pixel_values"].float().cpu().numpy().tobytes())
            rows = [hashlib.sha256(ids[mask.bool()].cpu().numpy().tobytes()).hexdigest()  # each row's tokens without padding
                    for ids, mask in zip(batch["input_ids"], batch.get("attention_mask", torch.ones_like(batch["input_ids"])))]
            seen = {"task": None, "ids": [d.hexdigest()], "rows": rows}
        row = {"step": trainer.global_step, **seen, "params": h.hexdigest(), "allreduce_rounds": self.rounds}
        self.rounds = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"probe.rank{trainer.global_rank}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
