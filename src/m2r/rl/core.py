"""The math of GRPO-RLVR as plain functions (DESIGN.md section 4); no Lightning here.

Shapes: B prompts, G responses per prompt, N = B*G rows, L response length.

Departures from the reference algorithm, each a choice the seeds leave open:
1. Advantages divide by the group's unbiased std + 1e-4 (as TRL does); `scale_std=False` keeps
   only the centring (Dr.GRPO).
2. Eq. 6 weights use the group's mean *accuracy* reward (the route's accuracy function: exact
   match, or EDNM for numeric spatial tasks), with sigma = 4 so that w = 1 at p = 0.5.
3. Loss aggregation normalises over the whole rollout batch, not over a micro-batch, so gradient
   accumulation gives the same gradient as one big batch.
"""

from __future__ import annotations

import functools
import math

import torch


def group_advantages(rewards: torch.Tensor, G: int, scale_std: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """A_i = (r_i - mean(r_group)) / (std(r_group) + eps); rewards [N] in groups of G consecutive rows -> [N]."""
    r = rewards.view(-1, G)  # [B, G]
    adv = r - r.mean(dim=1, keepdim=True)
    if scale_std:
        std = r.std(dim=1, keepdim=True) if G > 1 else torch.zeros_like(r[:, :1])
        adv = adv / (std + eps)
    return adv.reshape(-1)


def advantage_weights(accuracy: torch.Tensor, G: int, sigma: float = 4.0) -> torch.Tensor:
    """Eq. 6: w_q = sigma * p_q * (1 - p_q), p_q the group's mean accuracy; accuracy [N] -> weights [N]."""
    p = accuracy.view(-1, G).mean(dim=1)  # [B]
    return (sigma * p * (1 - p)).repeat_interleave(G)


def cosine_kl_coef(step: int, total: int, beta_max: float, beta_min: float = 0.0) -> float:
    """Eq. 7: beta_t = beta_min + (beta_max - beta_min) * (1 + cos(pi * t / T)) / 2, t clamped to [0, T]."""
    t = min(max(step, 0), total)
    return beta_min + (beta_max - beta_min) * (1 + math.cos(math.pi * t / max(total, 1))) / 2


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi (>= 0)."""
    d = ref_logps - logps
    return torch.exp(d) - d - 1


def aggregation_normalizer(mask: torch.Tensor, aggregation: str, max_len: int) -> torch.Tensor:
    """What a summed per-token loss is divided by, computed once over the whole rollout batch.

    token (DAPO): all response tokens; sequence (GRPO): each row's own length, then the number of
    rows; constant (Dr.GRPO): rows x max_len. Returns a per-row divisor [N]; the loss is
    sum_rows(sum_tokens(loss * mask) / divisor_row).
    """
    n = mask.shape[0]
    if aggregation == "token":
        return mask.sum().clamp(min=1).expand(n).to(torch.float32)
    if aggregation == "sequence":
        return (mask.sum(dim=1).clamp(min=1) * n).to(torch.float32)
    if aggregation == "constant":
        return torch.full((n,), float(n * max_len))
    raise ValueError(f"algo.aggregation={aggregation!r} is not one of token, sequence, constant")


def policy_loss(
    logps: torch.Tensor,  # [n, L] current policy
    old_logps: torch.Tensor,  # [n, L] the policy that sampled (detached)
    advantages: torch.Tensor,  # [n]
    mask: torch.Tensor,  # [n, L] 1 on response tokens that count
    divisor: torch.Tensor,  # [n] from aggregation_normalizer (rows of the whole batch)
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,  # [n, L]; needed when beta > 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate + beta * k3 KL per token, aggregated with `divisor`. Returns (loss, stats)."""
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps)
    adv = advantages.unsqueeze(1)
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs reference log-probs")
        kl = k3_kl(logps, ref_logps)
        per_token = per_token + beta * kl
    loss = ((per_token * mask).sum(dim=1) / divisor).sum()
    with torch.no_grad():
        n_tok = mask.sum().clamp(min=1)
        is_clipped = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))
        stats = {"clip_frac": (is_clipped.float() * mask).sum() / n_tok, "tokens": mask.sum()}
        stats["kl"] = (kl * mask).sum() / n_tok if kl is not None else torch.zeros(())
    return loss, stats


def token_logps(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    completion_ids: torch.Tensor,  # [n, L]
    temperature: float = 1.0,
    chunk: int = 256,
    prompts: tuple[dict[str, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Log-probabilities [n, L] of `completion_ids`, which follow the prompt `inputs` (left-padded).

    The backbone runs once over prompt + completion; the LM head and log-softmax run over chunks
    of `chunk` positions (`head_logps`), so the float32 logits held at once are [n, chunk, V], and
    none is kept for backward: each chunk's are recomputed there from its hidden states.

    `prompts` = (the distinct prompts' inputs, each row's prompt index [n]): where the backbone allows it
    (`shared_prompt_hidden`), each distinct prompt (its images included) runs through the backbone once and its
    keys and values serve all its rows, gradients included; otherwise the rows run whole, as without it."""
    if prompts is not None:
        hidden = shared_prompt_hidden(model, prompts[0], prompts[1], completion_ids)
        if hidden is not None:
            return head_logps(base_model(model).get_output_embeddings(), hidden, completion_ids, temperature, chunk)[0]
    ids = torch.cat([inputs["input_ids"], completion_ids], dim=1)
    attn = torch.cat([inputs["attention_mask"], torch.ones_like(completion_ids)], dim=1)
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    if "mm_token_type_ids" in inputs:
        extra["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(completion_ids)], dim=1)
    return sequence_logps(model, ids, attn, extra, completion_ids, completion_ids.shape[1], temperature, chunk)[0]


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (the model itself otherwise)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def plain_attention_cache(cache) -> bool:
    """Whether every layer of a KV cache is a plain growing attention layer, whose rows can be repeated and selected
    (not linear-attention or sliding-window layers). transformers builds the layers from the config up front, so this
    can be asked before a prefill; a cache whose layers come lazily answers again after it."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in getattr(cache, "layers", []))


def shared_prompt_hidden(
    model: torch.nn.Module,
    once: dict[str, torch.Tensor],  # processor inputs of the U distinct prompts (left-padded, their images once)
    index: torch.Tensor,  # [n] each row's prompt in `once`
    completion_ids: torch.Tensor,  # [n, L]
) -> torch.Tensor | None:
    """Final hidden states [n, L, H] at the positions that predict `completion_ids`, with each prompt run once.

    The prompts but their last token go through the backbone once (U rows, images encoded once) into a KV cache;
    the cache's rows are selected out to the n rows (a differentiable index, so each row's gradient reaches its
    prompt's keys and values and adds up there), and the rows' last prompt token and completion run on top of it.
    Equal to running each row whole (tested to 1e-5, log-probs and gradients); at G = 8 and prompts as long as the
    completions it is about half the backbone's work. None where it does not apply, and the caller runs rows whole:
    a backbone without a separable head or a cache that can select rows, sharded parameters (FSDP2 and ZeRO-3
    gather in the root's forward), gradient checkpointing while training (transformers' checkpointed layers drop
    the cache), a cache of other than plain attention layers (linear-attention hybrids), or a backbone outside the
    Qwen-VL family (`rope_deltas` and a `language_model`), the one whose positions were checked. The continuation's
    positions are read off the prefill's own (one past each row's last prompt token, per rotary axis)."""
    from transformers import DynamicCache

    core = base_model(model)
    backbone, head = getattr(core, "model", None), core.get_output_embeddings()
    if backbone is None or head is None or is_fsdp2(model) or type(model).__name__ == "DeepSpeedEngine" or hasattr(next(model.parameters()), "ds_id"):
        return None
    if core.training and any(getattr(m, "gradient_checkpointing", False) is True for m in core.modules()):
        return None
    P = once["input_ids"].shape[1]
    if P < 2 or not hasattr(backbone, "rope_deltas") or int(index.numel()) <= int(once["input_ids"].shape[0]):
        return None  # nothing to share, or no positions to continue from
    language_model = getattr(backbone, "language_model", None)
    if language_model is None:
        return None
    cache = DynamicCache(config=getattr(core, "config", None))
    if not plain_attention_cache(cache):  # linear-attention or sliding layers: rows run whole
        return None
    head_inputs = {k: (v[:, :-1] if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v) for k, v in once.items()}
    seen: dict[str, torch.Tensor | None] = {}

    def positions(module, args, kwargs):  # the positions the prefill's decoder gets (None: it counts from 0 itself)
        seen["position_ids"] = kwargs.get("position_ids")

    handle = language_model.register_forward_pre_hook(positions, with_kwargs=True)
    backbone.rope_deltas = None  # offsets of another batch must not survive into this prefill
    try:
        backbone(**head_inputs, past_key_values=cache, use_cache=True)
    finally:
        handle.remove()
        backbone.rope_deltas = None
    if not plain_attention_cache(cache):
        return None
    index = index.to(once["input_ids"].device)
    cache.batch_select_indices(index)
    L = completion_ids.shape[1]
    ids = torch.cat([once["input_ids"][index, -1:], completion_ids[:, :-1]], dim=1)  # [n, L]: the last prompt token predicts the first
    attn = torch.cat([once["attention_mask"][index], torch.ones_like(completion_ids[:, :-1])], dim=1)  # [n, P - 1 + L]
    position_ids = None  # the prefill counted from 0 (a text-only prompt): the continuation counts on from the cache
    prefill = seen.get("position_ids")
    if isinstance(prefill, torch.Tensor):
        # Each row continues one past its last prefilled token's position, in every rotary axis (3D for Qwen-VL, whose
        # text after images goes on from the images' largest position): read off the prefill, no version's convention assumed.
        axes = prefill[1:] if prefill.ndim == 3 and prefill.shape[0] == 4 else prefill  # [4, U, P-1]: text positions first
        axes = axes if axes.ndim == 3 else axes[None]  # [A, U, P - 1]
        step = torch.arange(1, L + 1, device=axes.device)
        position_ids = (axes[:, index, -1:] + step).squeeze(0) if axes.shape[0] == 1 else axes[:, index, -1:] + step  # [A, n, L] or [n, L]
    out = backbone(input_ids=ids, attention_mask=attn, past_key_values=cache, use_cache=True, position_ids=position_ids)
    backbone.rope_deltas = None
    return out.last_hidden_state  # [n, L, H]


def sequence_logps(
    model: torch.nn.Module,
    ids: torch.Tensor,  # [n, T] the whole sequence
    attn: torch.Tensor,  # [n, T]
    extra: dict[str, torch.Tensor],  # pixel_values, image_grid_thw, mm_token_type_ids, ...
    targets: torch.Tensor,  # [n, L] the last L tokens' ids (positions T-L .. T-1), predicted from the positions before them
    L: int,
    temperature: float = 1.0,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities [n, L] of `targets`, whether each is the argmax [n, L]) over the last L positions of a
    sequence: the backbone once, the head per chunk of positions (see `head_logps`). Every strategy: the root's
    forward where FSDP2 or a ZeRO-3 engine must gather the root's weights; the model's own head where it is not separable."""
    core = base_model(model)
    backbone, head = getattr(core, "model", None), core.get_output_embeddings()
    fsdp2 = is_fsdp2(model)
    through_root = fsdp2 or type(model).__name__ == "DeepSpeedEngine"
    if backbone is not None and head is not None and (not fsdp2 or is_fsdp2(head)):
        if through_root:
            # FSDP2 gathers the root's weights (embeddings, norm) in the root's forward only, and a
            # ZeRO-3 engine (the reference model's) ends its parameter-fetch trace there, so go
            # through it (one logit position) and take the final hidden state from its outputs; the
            # head gathers itself per chunk (an FSDP2 unit of its own, or ZeRO-3's module hooks).
            out = model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=1, output_hidden_states=True, **extra)
            hidden = out.hidden_states[-1][:, -L - 1 : -1]  # [n, L, H]
        else:
            hidden = backbone(input_ids=ids, attention_mask=attn, use_cache=False, **_share_images(backbone, model, extra)).last_hidden_state[:, -L - 1 : -1]  # [n, L, H]
        return head_logps(head, hidden, targets, temperature, chunk)
    # No separable head (or FSDP2 with a tied head, which lives in the root's group): the model's own head over L + 1 positions.
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=L + 1, **extra).logits[:, :-1]
    return _chunk_logps(logits, targets, temperature, None)


@functools.lru_cache(maxsize=None)
def _takes_encoder_outputs(cls: type) -> bool:
    """Whether a backbone class's forward takes `mm_encoder_outputs` (asked once per class, not per micro-batch)."""
    import inspect

    return "mm_encoder_outputs" in inspect.signature(cls.forward).parameters


_DEEPSTACK: set[type] = set()  # backbone classes whose image features carry per-layer parts


_MODALITIES = (("image", "pixel_values", "image_grid_thw", "get_image_features"), ("video", "pixel_values_videos", "video_grid_thw", "get_video_features"))


def _distinct_blocks(pixels: torch.Tensor, grid: torch.Tensor) -> tuple[list[torch.Tensor], list[int], list[int]]:
    """(the items' patch blocks, the first item of each distinct block, each item's index among the distinct)."""
    blocks = list(torch.split(pixels, grid.prod(-1).tolist()))
    first: dict[tuple, list[int]] = {}
    index: list[int] = []
    uniq: list[int] = []
    for i, blk in enumerate(blocks):
        sig = (tuple(grid[i].tolist()), float(blk[0].sum()), float(blk[-1].sum()), float(blk.sum()))
        j = next((u for u in first.get(sig, []) if torch.equal(blocks[uniq[u]], blk)), None)
        if j is None:
            j = len(uniq)
            uniq.append(i)
            first.setdefault(sig, []).append(j)
        index.append(j)
    return blocks, uniq, index


def _share_images(backbone: torch.nn.Module, model: torch.nn.Module, extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`extra` with each distinct image and video encoded once: the G rows of a prompt carry G copies of its patches,
    and the vision tower would encode every copy. Where the backbone takes precomputed encoder outputs (transformers'
    `mm_encoder_outputs`), the distinct items are encoded once and their features handed to every row that shows
    them; gradients from all rows add up in the shared features. The backbone takes either pixels or encoder outputs,
    so when anything repeats, every modality present goes in as encoder outputs (grids and `second_per_grid_ts` stay:
    the rotary positions are computed from them). Unchanged where nothing repeats, the backbone cannot take encoder
    outputs, or the parameters are sharded (ZeRO-3 gathers per module call, FSDP2 in the root's forward)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    present = [m for m in _MODALITIES if extra.get(m[1]) is not None and extra.get(m[2]) is not None]
    if not present or hasattr(next(model.parameters()), "ds_id") or is_fsdp2(model):
        return extra
    if not _takes_encoder_outputs(type(backbone)) or type(backbone) in _DEEPSTACK or not all(hasattr(backbone, m[3]) for m in present):
        return extra
    found = {m[0]: _distinct_blocks(extra[m[1]], extra[m[2]]) for m in present}
    if all(len(uniq) == len(blocks) for blocks, uniq, _ in found.values()):
        return extra
    outputs = {}
    for kind, pix, grid_key, encode in present:
        blocks, uniq, index = found[kind]
        encoded = getattr(backbone, encode)(torch.cat([blocks[i] for i in uniq]), extra[grid_key][uniq], return_dict=True)
        if getattr(encoded, "deepstack_features", None) is not None:  # Qwen3-VL: per-layer features too, not shared here
            _DEEPSTACK.add(type(backbone))  # asked once per class: later passes do not encode twice
            return extra
        feats = encoded.pooler_output  # one per distinct item
        outputs[kind] = BaseModelOutputWithPooling(pooler_output=tuple(feats[j] for j in index))
    out = {k: v for k, v in extra.items() if k not in ("pixel_values", "pixel_values_videos")}
    out["mm_encoder_outputs"] = outputs
    return out


def _chunk_logps(x: torch.Tensor, targets: torch.Tensor, temperature: float, head: torch.nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    logits = (head(x) if head is not None else x).float() / temperature  # [n, c, V]
    logp = torch.log_softmax(logits, dim=-1)
    return torch.gather(logp, 2, targets[..., None]).squeeze(2), logits.argmax(-1) == targets


def head_logps(head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(targets) [n, L], argmax hits [n, L]) from final hidden states [n, L, H], `chunk` positions at a time.
    With gradients on, each chunk runs under activation checkpointing: what backward keeps is the chunk's hidden
    states, and its [n, chunk, V] float32 logits and log-softmax are recomputed there, one chunk at a time
    (at a 152K vocabulary, 8 x 1024 positions of float32 log-probs are 5 GB that would otherwise stay)."""
    from torch.utils.checkpoint import checkpoint

    logps, hits = [], []
    for s in range(0, hidden.shape[1], chunk):
        h, t = hidden[:, s : s + chunk], targets[:, s : s + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            lp, hit = checkpoint(_chunk_logps, h, t, temperature, head, use_reentrant=False)
        else:
            lp, hit = _chunk_logps(h, t, temperature, head)
        logps.append(lp)
        hits.append(hit)
    return torch.cat(logps, dim=1), torch.cat(hits, dim=1)


def is_fsdp2(model: torch.nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, FSDPModule)
