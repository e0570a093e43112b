"""Rollouts: G sampled responses per prompt in one batched `generate` call with the KV cache.

Prompts are rendered with the model's chat template (M2 system prompt), left-padded, and each
repeated G times, so rows [b*G, (b+1)*G) are prompt b's group. A response ends at its first EOS
(kept, so the model is trained to stop); everything after is masked. A response that hits
`max_new_tokens` without EOS is truncated; `mask_truncated` drops it from the loss (DAPO).
"""

from __future__ import annotations

import inspect
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image

from m2r.data.collate import M2_SYSTEM_PROMPT, build_messages
from m2r.data.media import count_media, processor_inputs, split_media
from m2r.data.schema import Sample
from m2r.rl.core import base_model, is_fsdp2, plain_attention_cache


@dataclass
class Rollouts:
    samples: list[Sample]  # [B]
    prompt_inputs: dict[str, torch.Tensor]  # processor outputs for the N = B*G rows (left-padded)
    completion_ids: torch.Tensor  # [N, L]
    completion_mask: torch.Tensor  # [N, L] 1 up to and including the first EOS
    truncated: torch.Tensor  # [N] bool: no EOS within max_new_tokens
    texts: list[str] = field(default_factory=list)  # [N] decoded responses (special tokens dropped)
    images_per_row: list[int] = field(default_factory=list)  # [N] images in each row's prompt
    G: int = 1
    prompt_lengths: list[int] = field(default_factory=list)  # [B] prompt tokens (images included)
    videos_per_row: list[int] = field(default_factory=list)  # [N] videos in each row's prompt (empty: none)


def media_per_prompt(batch: Sequence[tuple[Sample, list]]) -> tuple[list[int], list[int]]:
    """([images], [videos]) of each prompt of a batch of (Sample, media)."""
    counts = [count_media(media) for _, media in batch]
    return [i for i, _ in counts], [v for _, v in counts]


def prompt_inputs(processor, batch: Sequence[tuple[Sample, list]], G: int, system_prompt: str | None = M2_SYSTEM_PROMPT) -> dict[str, torch.Tensor]:
    """Processor inputs for each prompt repeated G times, left-padded for generation. The processor runs once per
    prompt (its images and videos resized and patched once); the G copies are rows selected from that."""
    texts = [processor.apply_chat_template(build_messages(sample, media, system_prompt), tokenize=False, add_generation_prompt=True) for sample, media in batch]
    side = processor.tokenizer.padding_side
    processor.tokenizer.padding_side = "left"
    try:
        once = dict(processor_inputs(processor, texts, [m for _, m in batch], padding=True, return_tensors="pt"))
    finally:
        processor.tokenizer.padding_side = side
    if G == 1:
        return once
    return select_rows(once, [b for b in range(len(batch)) for _ in range(G)], *media_per_prompt(batch))


def check_prompt_lengths(inputs: dict[str, torch.Tensor], batch: Sequence[tuple[Sample, list[Image.Image]]], G: int, bound: int | None) -> list[int]:
    """Each prompt's length in tokens (images included); a ValueError naming the prompt when one exceeds `bound`."""
    lengths = inputs["attention_mask"][::G].sum(dim=1).tolist()
    if bound is not None:
        for (sample, media), n in zip(batch, lengths):
            if n > bound:
                images, videos = split_media(media)
                video = f" and {len(videos)} video(s) of {sum(map(len, videos))} frames" if videos else ""
                fewer = ", fewer frames (data.num_frames) or a lower model.video_max_pixels (fewer video tokens)" if videos else ""
                raise ValueError(
                    f"RL prompt {sample.id!r} (task {sample.task}, {len(images)} image(s){video}) is {n} tokens, over grpo.module.max_prompt_length="
                    f"{bound}. Raise the bound (e.g. grpo.module.max_prompt_length={n + 256}), lower model.max_pixels (fewer image "
                    f"tokens){fewer}, or drop such prompts from the RL data")
    return [int(n) for n in lengths]


def vision_token_ids(model, processor) -> list[int]:
    """Image/video placeholder and boundary tokens: a response must never contain them, or the
    re-encoded prompt + response would claim images it does not have."""
    ids = set()
    for holder in (model.config, processor):
        for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
            v = getattr(holder, name, None)
            if isinstance(v, int):
                ids.add(v)
    return sorted(ids)


def response_mask(completion_ids: torch.Tensor, eos_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [N, L] through the first EOS inclusive, truncated [N]) for generated ids."""
    is_eos = torch.isin(completion_ids, torch.tensor(list(eos_ids), device=completion_ids.device))
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.int().argmax(dim=1), torch.full_like(has_eos, completion_ids.shape[1], dtype=torch.long))
    pos = torch.arange(completion_ids.shape[1], device=completion_ids.device)
    mask = (pos[None, :] <= first[:, None]).long()
    return mask, ~has_eos


@contextmanager
def root_gathered(model: torch.nn.Module):
    """FSDP2: hold the root's own weights (patch embedding, merger, embeddings, norm, head) gathered
    while generating. transformers' generate() encodes the images through `get_image_features`
    before its first forward, outside the root's forward hooks. The first call runs one 1-token
    forward through the root, so FSDP initialises from the root (a vision block reached first
    would make itself a root and break every later forward). A no-op for any other model."""
    if not is_fsdp2(model):
        yield
        return
    if not getattr(model, "_m2r_root_initialised", False):
        device = next(model.parameters()).device
        model(input_ids=torch.zeros(1, 1, dtype=torch.long, device=device), attention_mask=torch.ones(1, 1, dtype=torch.long, device=device))
        model._m2r_root_initialised = True
    model.unshard()
    try:
        yield
    finally:
        model.reshard()


@torch.no_grad()
def generate_rollouts(
    model: torch.nn.Module,
    processor,
    batch: Sequence[tuple[Sample, list[Image.Image]]],
    G: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    system_prompt: str | None = M2_SYSTEM_PROMPT,
    seed: int | None = None,
    synced_gpus: bool = False,
    max_prompt_length: int | None = None,
    share_prefill: bool = True,
    min_new_tokens: int = 0,
    cache: str = "dynamic",
    compile: bool = False,
) -> Rollouts:
    """G sampled responses per prompt. With `share_prefill`, each prompt (its images included) is prefilled once and
    its KV cache repeated to its G rows, so the vision tower and the prompt's forward run B times, not B x G.

    Each token is drawn from softmax(logits / temperature), restricted to the top-p mass, with the vision tokens (and,
    before `min_new_tokens`, the end tokens) excluded: `RolloutSampler`, nothing else. The checkpoint's own generation
    settings (a Qwen2.5-VL release asks for repetition_penalty=1.05, top_k=1) are not applied: they would sample from a
    distribution other than the policy's, and the importance ratios would be wrong. Only its end tokens are read.

    `cache="static"` preallocates the KV cache for the prompt and `max_new_tokens` (a shared prefill is copied into
    it), so each decode step writes in place instead of growing the cache; with `compile`, transformers compiles the
    decode step (on CUDA only; it is ignored on CPU)."""
    check_cache_settings(cache, compile)
    device = next(model.parameters()).device
    once = prompt_inputs(processor, batch, 1, system_prompt)
    lengths = check_prompt_lengths(once, batch, 1, max_prompt_length)
    rows = [b for b in range(len(batch)) for _ in range(G)]
    n_img, n_vid = media_per_prompt(batch)
    inputs = select_rows(once, rows, n_img, n_vid) if G > 1 else once
    dtype = next(model.parameters()).dtype
    once, inputs = ({k: (v.to(device, dtype) if k in PIXEL_KEYS else v.to(device)) for k, v in x.items()} for x in (once, inputs))
    tok = processor.tokenizer
    gen_eos = model.generation_config.eos_token_id
    gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    eos = [tok.eos_token_id, *gen_eos]  # the chat end-of-turn and whatever the checkpoint's generation config adds
    if seed is not None:
        torch.manual_seed(seed)
    from transformers import GenerationConfig, LogitsProcessorList

    eos = sorted(set(eos))
    sampler = RolloutSampler(temperature, top_p, vision_token_ids(model, processor), eos, min_new_tokens, inputs["input_ids"].shape[1])
    # Greedy over the sampler's output is the sample: transformers adds no warpers, and its multinomial (about 1 ms a
    # call on CPU at any vocabulary) is replaced by one uniform per row.
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id, use_cache=True,
                              disable_compile=not compile)
    static_len = inputs["input_ids"].shape[1] + max_new_tokens if cache == "static" else None
    if static_len is not None and not (share_prefill and G > 1):
        config.cache_implementation = "static"
    was_training = model.training
    model.eval()
    try:
        with root_gathered(model), _without_checkpoint_generation_settings(model):
            prefilled = _prefill(model, once, G, static_len) if share_prefill and G > 1 else None
            gen_inputs = {k: v for k, v in inputs.items() if k not in VISION_KEYS} if prefilled is not None else inputs
            out = model.generate(
                **gen_inputs, past_key_values=prefilled, generation_config=config, logits_processor=LogitsProcessorList([sampler]),
                synced_gpus=synced_gpus,  # sharded parameters: every rank runs a forward until all ranks are done
            )
    finally:
        model.train(was_training)
    completion = out[:, inputs["input_ids"].shape[1] :]
    if completion.shape[1] == 0:  # nothing generated at all
        completion = torch.full((completion.shape[0], 1), tok.eos_token_id, device=device)
    mask, truncated = response_mask(completion, eos)
    completion = torch.where(mask.bool(), completion, torch.full_like(completion, tok.pad_token_id))
    texts = tok.batch_decode(completion, skip_special_tokens=True)
    images_per_row = [n for n in n_img for _ in range(G)]
    videos_per_row = [n for n in n_vid for _ in range(G)]
    return Rollouts([s for s, _ in batch], inputs, completion, mask, truncated, texts, images_per_row, G, lengths, videos_per_row)


def check_cache_settings(cache: str, compile: bool) -> None:
    """rollout.cache and rollout.compile: a ValueError naming the key for a value generate cannot take."""
    if cache not in ("dynamic", "static"):
        raise ValueError(f"rollout.cache={cache!r}: must be dynamic or static")
    if compile and cache != "static":
        raise ValueError("rollout.compile=true needs rollout.cache=static: transformers compiles the decode step only over a preallocated cache")


class RolloutSampler:
    """A transformers logits processor that samples the next token and returns scores that are -inf everywhere but
    there, so greedy decoding emits the sample. The draw: softmax(logits / temperature) with `banned` ids (and `eos`
    before `min_new_tokens` new tokens) removed, cut to the smallest set of most likely tokens whose mass reaches
    `top_p` (at least one), sampled by inverse CDF with one uniform per row from torch's generator. A token of zero
    probability is never drawn: the CDF's first index at or above a draw in (0, total] has positive mass."""

    def __init__(self, temperature: float, top_p: float, banned: Sequence[int], eos: Sequence[int], min_new_tokens: int, prompt_length: int):
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: sampling needs a temperature above 0")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}: must be in (0, 1]")
        self.temperature, self.top_p = temperature, top_p
        self.banned, self.eos = list(banned), list(eos)
        self.min_new_tokens, self.prompt_length = min_new_tokens, prompt_length
        self._index: dict[tuple, torch.Tensor] = {}

    def _ids(self, ids: list[int], device: torch.device) -> torch.Tensor:
        key = (tuple(ids), device)
        if key not in self._index:
            self._index[key] = torch.tensor(ids, dtype=torch.long, device=device)
        return self._index[key]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        V = logits.shape[-1]
        banned = [i for i in self.banned if i < V]
        if input_ids.shape[1] - self.prompt_length < self.min_new_tokens:
            banned += [i for i in self.eos if i < V]
        if banned:
            logits = logits.index_fill(1, self._ids(banned, logits.device), float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            sorted_p, order = probs.sort(dim=-1, descending=True)
            drop = (sorted_p.cumsum(dim=-1) - sorted_p) >= self.top_p  # mass before a token already reaches top_p
            probs = probs.scatter(1, order, sorted_p.masked_fill(drop, 0.0))
        cdf = probs.cumsum(dim=-1)
        total = cdf[:, -1]
        if not bool((torch.isfinite(total) & (total > 0)).all()):
            bad = (~(torch.isfinite(total) & (total > 0))).nonzero().flatten().tolist()
            raise ValueError(f"rollout rows {bad[:8]} have no token to sample: their logits are NaN or infinite, or every token is banned "
                             f"(vision tokens, and end tokens before min_new_tokens={self.min_new_tokens})")
        u = (1.0 - torch.rand(cdf.shape[0], 1, device=cdf.device, dtype=cdf.dtype)) * cdf[:, -1:]  # in (0, total]
        token = torch.searchsorted(cdf, u).clamp_(max=V - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, token, 0.0)


@contextmanager
def _without_checkpoint_generation_settings(model: torch.nn.Module):
    """transformers fills every generation setting a call leaves unset from `model.generation_config` (a checkpoint's
    repetition penalty, bad words, forced tokens, ...). While rolling out, that is transformers' defaults instead."""
    from transformers import GenerationConfig

    core = base_model(model)
    saved = getattr(core, "generation_config", None)
    if saved is None:
        yield
        return
    core.generation_config = GenerationConfig()
    try:
        yield
    finally:
        core.generation_config = saved


def _prefill(model: torch.nn.Module, once: dict[str, torch.Tensor], G: int, static_len: int | None = None):
    """The KV cache of every prompt but its last token, one row per prompt, repeated to G rows per prompt (None where the
    model's cache cannot be repeated: generate then prefills all rows itself). The last prompt token is left to
    `generate`, which starts from the cache. Models with 3D rotary positions (Qwen2.5-VL) keep per-row offsets from
    the prefill (`rope_deltas`), corrected to continue from the whole prompt's last position (`_continuation_deltas`);
    they are repeated with the cache. With `static_len`, the repeated cache is copied into a
    preallocated (static) cache of that many positions."""
    from transformers import DynamicCache, StaticCache

    cache = DynamicCache(config=getattr(model, "config", None))
    if not hasattr(cache, "batch_repeat_interleave") or not plain_attention_cache(cache):  # linear-attention or sliding layers
        return None
    head = {k: (v[:, :-1] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v) for k, v in once.items()}
    if "image_grid_thw" not in head and "video_grid_thw" not in head:
        # Text only: the positions `generate` continues from are the attention mask's (a left-padded row's first real
        # token at 0); a plain prefill would put it at its padded index, and the padded rows would decode shifted.
        mask = head["attention_mask"].long()
        head["position_ids"] = (mask.cumsum(dim=1) - 1).masked_fill(mask == 0, 1)
    holders = [m for m in model.modules() if hasattr(m, "rope_deltas")]
    for m in holders:  # a previous call's offsets (another batch size) must not survive a text-only prefill, which sets none
        m.rope_deltas = None
    model(**head, past_key_values=cache, use_cache=True, logits_to_keep=1)
    if not plain_attention_cache(cache):  # layers built lazily by the prefill: generate prefills all rows itself
        for m in holders:
            m.rope_deltas = None
        return None
    cache.batch_repeat_interleave(G)
    continued = _continuation_deltas(model, once)
    for m in holders:
        deltas = continued if continued is not None else getattr(m, "rope_deltas", None)
        if isinstance(deltas, torch.Tensor) and deltas.shape[0] == once["input_ids"].shape[0]:
            m.rope_deltas = deltas.repeat_interleave(G, dim=0)
    if static_len is None:
        return cache
    static = StaticCache(config=model.config, max_cache_len=static_len)
    n = once["input_ids"].shape[1] - 1
    for i, layer in enumerate(cache.layers):
        static.update(layer.keys, layer.values, i, {"cache_position": torch.arange(n, device=layer.keys.device)})
    return static


def _continuation_deltas(model: torch.nn.Module, once: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Per prompt row [B, 1]: the rotary offset `generate` must decode with after a prefill of all but the last prompt
    token, so that the last token sits where a forward of the whole prompt puts it and the completion follows it, as
    the scoring forward (`token_logps`) has them. None for models without 3D positions or prompts without images or
    videos (the prefill's own offset stands).

    The prefill leaves an offset that continues from its largest position + 1. That is the last token's position
    unless a video's temporal positions (t x tokens_per_second x seconds per temporal patch) run past the text after
    it, as transformers 5's `get_rope_index` allows: then decoding started a few positions too far (measured: 95 where
    the whole prompt has 93; a two-video prompt 127 against 92). The correction is the difference, added to the
    prefill's own offset, so it holds whether `generate` counts positions over real tokens (transformers 5) or over the
    padded row (4.x)."""
    if "image_grid_thw" not in once and "video_grid_thw" not in once:
        return None
    rope = next((m for m in model.modules() if hasattr(m, "get_rope_index") and hasattr(m, "rope_deltas")), None)
    prefilled = getattr(rope, "rope_deltas", None)
    if not isinstance(prefilled, torch.Tensor) or prefilled.shape[0] != once["input_ids"].shape[0]:
        return None
    mask = once["attention_mask"].bool()
    if not bool(mask[:, -1].all()):
        raise ValueError("the shared prefill needs left-padded prompts (every row's last token real)")
    takes = inspect.signature(rope.get_rope_index).parameters
    positions, _ = rope.get_rope_index(**{k: v for k, v in once.items() if k in takes})  # [3, B, L]
    last = positions[:, :, -1].amax(dim=0)
    head = positions[:, :, :-1].masked_fill(~mask[None, :, :-1], torch.iinfo(positions.dtype).min).amax(dim=(0, 2))
    return prefilled + (last - (head + 1)).to(prefilled.device).view(-1, 1)


# Processor outputs that are per image or per video, not per row: (pixels [patches, D], grids [n, 3], other per-item keys).
_ITEM_KEYS = {"image": ("pixel_values", "image_grid_thw", ()), "video": ("pixel_values_videos", "video_grid_thw", ("second_per_grid_ts",))}
VISION_KEYS = frozenset(k for pix, grid, more in _ITEM_KEYS.values() for k in (pix, grid, *more))
PIXEL_KEYS = frozenset(pix for pix, _, _ in _ITEM_KEYS.values())  # cast to the model's dtype


def select_rows(inputs: dict[str, torch.Tensor], rows: Sequence[int], images_per_row: Sequence[int], videos_per_row: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The processor inputs of some rows (repeats allowed), with their images' and videos' patches (pixel_values and
    pixel_values_videos are [patches, D], in item order; grids and second_per_grid_ts one entry per item).
    `images_per_row` / `videos_per_row` count each input row's items (videos: none when not given)."""
    idx = torch.as_tensor(list(rows), device=inputs["input_ids"].device)
    out = {k: v[idx] for k, v in inputs.items() if k not in VISION_KEYS}
    counts = {"image": list(images_per_row), "video": list(videos_per_row or [0] * len(images_per_row))}
    for kind, (pix, grid_key, more) in _ITEM_KEYS.items():
        if grid_key not in inputs:
            continue
        grid = inputs[grid_key]
        if sum(counts[kind]) != len(grid):
            raise ValueError(f"select_rows: the rows claim {sum(counts[kind])} {kind}(s) but {grid_key} has {len(grid)}")
        item_start = [0]
        for n in counts[kind]:
            item_start.append(item_start[-1] + n)
        patch_start = [0]
        for n in grid.prod(dim=-1).tolist():
            patch_start.append(patch_start[-1] + n)
        items = [i for r in rows for i in range(item_start[r], item_start[r + 1])]
        if items:
            out[grid_key] = grid[items]
            out[pix] = torch.cat([inputs[pix][patch_start[i] : patch_start[i + 1]] for i in items])
            for k in more:
                if k in inputs:
                    v = inputs[k]
                    out[k] = v[items] if isinstance(v, torch.Tensor) else [v[i] for i in items]
    return out


def repetition_loop(text: str, n: int = 8, min_repeats: int = 3) -> bool:
    """True when the response ends in an n-gram loop: the same n words repeated at least `min_repeats` times."""
    words = re.findall(r"\S+", text[-20_000:])
    if len(words) < n * min_repeats:
        return False
    for size in range(1, n + 1):
        tail = words[-size:]
        reps = 1
        while len(words) >= size * (reps + 1) and words[-size * (reps + 1) : -size * reps] == tail:
            reps += 1
        if reps >= min_repeats and size * reps >= n:
            return True
    return False
