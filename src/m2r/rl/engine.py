"""Rollout engines: what turns B prompts into B x G sampled responses (`Rollouts`), behind one interface.

`rollout=hf` (`HFEngine`) runs transformers' `generate` with the KV cache on the training model itself, so
there are no weights to sync. An engine for vLLM or SGLang would implement the same `generate` (and
sync the policy's weights before it), and GRPO would not change: the step's later phases read only
the `Rollouts` record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from m2r.data.schema import Sample
from m2r.rl.rollout import VISION_KEYS, Rollouts, check_cache_settings, generate_rollouts


class RolloutEngine(Protocol):
    def generate(
        self, model: torch.nn.Module, processor, batch: Sequence[tuple[Sample, list[Image.Image]]], G: int, max_new_tokens: int,
        temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None, synced_gpus: bool = False, max_prompt_length: int | None = None,
    ) -> Rollouts: ...


@dataclass
class HFEngine:
    """transformers' `generate` on the policy, at most `max_rows` rows (prompts x G) per call: the KV cache of one
    call is what bounds generation memory (at 7B, G = 16 and 1024 new tokens, all 256 rows of a step at once hold
    about 35 GB of cache). None: every row in one call. Each call is seeded from the step's seed and its first prompt,
    so a result does not depend on how the rows are cut when sampling is seeded."""

    max_rows: int | None = None
    min_new_tokens: int = 0  # end tokens banned before this many new tokens (benchmarks force a length with it)
    cache: str = "dynamic"  # dynamic (grows each step) | static (preallocated, written in place)
    compile: bool = False  # transformers compiles the decode step over a static cache (CUDA only)

    def __post_init__(self) -> None:
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError(f"rollout.max_rows={self.max_rows}: at least 1 row per generate call (or null for all rows at once)")
        if self.min_new_tokens < 0:
            raise ValueError(f"rollout.min_new_tokens={self.min_new_tokens}: must be 0 or more")
        check_cache_settings(self.cache, self.compile)

    def generate(self, model, processor, batch, G, max_new_tokens, temperature=1.0, top_p=1.0, seed=None, synced_gpus=False, max_prompt_length=None) -> Rollouts:
        per = len(batch) if self.max_rows is None else max(1, self.max_rows // G)
        parts = [
            generate_rollouts(model, processor, batch[i : i + per], G, max_new_tokens, temperature, top_p,
                              seed=None if seed is None else seed + 7_919 * i, synced_gpus=synced_gpus, max_prompt_length=max_prompt_length,
                              min_new_tokens=self.min_new_tokens, cache=self.cache, compile=self.compile)
            for i in range(0, len(batch), per)
        ]
        return parts[0] if len(parts) == 1 else concat_rollouts(parts, processor.tokenizer.pad_token_id)


def _left_pad(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(t, (width - t.shape[1], 0), value=value)


def _right_pad(t: torch.Tensor, width: int, value: int) -> torch.Tensor:
    return F.pad(t, (0, width - t.shape[1]), value=value)


def concat_rollouts(parts: list[Rollouts], pad_id: int) -> Rollouts:
    """One record from several generate calls: prompts left-padded to the longest, completions right-padded (masked)."""
    P = max(p.prompt_inputs["input_ids"].shape[1] for p in parts)
    L = max(p.completion_ids.shape[1] for p in parts)
    inputs: dict[str, torch.Tensor] = {}
    for k in dict.fromkeys(k for p in parts for k in p.prompt_inputs):
        if k in VISION_KEYS:
            inputs[k] = torch.cat([p.prompt_inputs[k] for p in parts if k in p.prompt_inputs])
        else:
            inputs[k] = torch.cat([_left_pad(p.prompt_inputs[k], P, pad_id if k == "input_ids" else 0) for p in parts])
    return Rollouts(
        samples=[s for p in parts for s in p.samples],
        prompt_inputs=inputs,
        completion_ids=torch.cat([_right_pad(p.completion_ids, L, pad_id) for p in parts]),
        completion_mask=torch.cat([_right_pad(p.completion_mask, L, 0) for p in parts]),
        truncated=torch.cat([p.truncated for p in parts]),
        texts=[t for p in parts for t in p.texts],
        images_per_row=[n for p in parts for n in p.images_per_row],
        G=parts[0].G,
        prompt_lengths=[n for p in parts for n in p.prompt_lengths],
        videos_per_row=[n for p in parts for n in (p.videos_per_row or [0] * len(p.texts))],
    )
