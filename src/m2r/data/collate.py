"""Turning samples into model inputs through the model's own processor and chat template.

SFT labels cover the assistant response only (up to and including its end-of-turn token):
system prompt, question, image tokens and padding are -100. The response span is found as the
suffix of the rendered conversation that follows the generation prompt, so the same code serves
any processor whose chat template renders `prompt + response`, not just Qwen's.

Sequences longer than `max_length` lose the end of their response, never image tokens (cutting
those makes the model fail with "Image features and image tokens do not match"). A prompt that
alone does not fit is an error that says what to change.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from m2r.data.media import Video, content_parts, processor_inputs
from m2r.data.schema import Sample, format_question

# The M2-Reasoning system prompt (seeds: model card).
M2_SYSTEM_PROMPT = (
    "You are a helpful assistant. When the user asks a question, your response must include two parts: "
    "first, the reasoning process enclosed in <think>...</think> tags, then the final answer enclosed in "
    "<answer>...</answer> tags. The critical answer or key result should be placed within \\boxed{}."
)
IGNORE = -100


class SequenceTooLongError(ValueError):
    pass


def build_messages(sample: Sample, media: int | Sequence[Any], system_prompt: str | None, response: str | None = None) -> list[dict]:
    """The chat messages of a sample; `media` is its images and videos (or a number of images)."""
    msgs: list[dict] = []
    if system_prompt:
        msgs.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    parts = [{"type": "image"}] * media if isinstance(media, int) else content_parts(media)
    content = [dict(p) for p in parts] + [{"type": "text", "text": format_question(sample)}]
    msgs.append({"role": "user", "content": content})
    if response is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return msgs


def _max_pixels(processor) -> Any:
    size = getattr(processor.image_processor, "size", None)
    return (size.get("longest_edge") if hasattr(size, "get") else getattr(size, "longest_edge", None)) or "?"


def _video_max_pixels(processor) -> Any:
    vp = getattr(processor, "video_processor", None)
    size = getattr(vp, "size", None)
    return (size.get("longest_edge") if hasattr(size, "get") else getattr(size, "longest_edge", None)) or "?"


def _too_long(sample: Sample, prompt_len: int, image_tokens: int, max_length: int, max_pixels: Any, video_tokens: int = 0, video_max_pixels: Any = "?") -> SequenceTooLongError:
    fixes = f"Raise data.max_length (e.g. data.max_length={prompt_len + 256})"
    if image_tokens:
        fixes += f", or lower model.max_pixels (now {max_pixels}; each 28x28 pixel block is one image token for Qwen2.5-VL)"
    if video_tokens:
        n_frames = sum(len(v.get("frames") or []) for v in sample.videos)
        fixes += (f", or fewer frames (data.num_frames; this sample has {n_frames}; every 2 frames make one temporal patch), or lower "
                  f"model.video_max_pixels (now {video_max_pixels} per frame; a 28x28 block of a frame pair is one video token)")
    what = f"{image_tokens} of them image tokens" + (f", {video_tokens} video tokens" if video_tokens else "")
    return SequenceTooLongError(f"sample {sample.id!r}: the prompt alone is {prompt_len} tokens ({what}) but data.max_length={max_length}. {fixes}.")


class SFTCollator:
    """Batches (Sample, images) pairs into `input_ids, attention_mask, labels, pixel_values, ...`."""

    def __init__(self, processor, max_length: int, system_prompt: str | None = M2_SYSTEM_PROMPT):
        self.processor, self.max_length, self.system_prompt = processor, max_length, system_prompt
        self.tokenizer = processor.tokenizer
        self.image_token_id = getattr(processor, "image_token_id", None) or self.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<|image_pad|>"))
        self.video_token_id = getattr(processor, "video_token_id", None) or self.tokenizer.convert_tokens_to_ids(getattr(processor, "video_token", "<|video_pad|>"))

    def texts(self, sample: Sample, media: int | Sequence[Any]) -> tuple[str, str]:
        """(prompt text with generation prompt, response suffix) as the chat template renders them."""
        if not sample.cot:
            raise ValueError(f"sample {sample.id!r} has no 'cot'; SFT needs a reasoning trace as its target")
        prompt = self.processor.apply_chat_template(build_messages(sample, media, self.system_prompt), tokenize=False, add_generation_prompt=True)
        full = self.processor.apply_chat_template(build_messages(sample, media, self.system_prompt, sample.cot), tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template does not render the conversation as prompt + response; SFT cannot locate the response span")
        return prompt, full[len(prompt):]

    def __call__(self, batch: Sequence[tuple[Sample, list[Image.Image | Video]]]) -> dict[str, torch.Tensor]:
        texts, responses = [], []
        for sample, media in batch:
            prompt, response = self.texts(sample, media)
            texts.append(prompt + response)
            responses.append(response)
        # Right padding, so each response ends at its row's last real token.
        self.tokenizer.padding_side = "right"
        enc = processor_inputs(self.processor, texts, [m for _, m in batch], padding=True, return_tensors="pt")
        input_ids, attn = enc["input_ids"], enc["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE)
        eos = self.tokenizer.eos_token_id
        for i, response in enumerate(responses):
            resp_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
            end = int(attn[i].sum())
            start = end - len(resp_ids)
            if input_ids[i, start:end].tolist() != resp_ids:
                raise ValueError(f"sample {batch[i][0].id!r}: the response tokens do not match the tail of the tokenized conversation; the tokenizer merges across the prompt/response boundary")
            labels[i, start:end] = input_ids[i, start:end]
            # Nothing after the end-of-turn token (the template's trailing newline) is a target.
            eos_pos = (input_ids[i, start:end] == eos).nonzero()
            if len(eos_pos):
                labels[i, start + int(eos_pos[0]) + 1 : end] = IGNORE
            if start > self.max_length - 1:
                n_img, n_vid = self._vision_tokens(input_ids[i, :start])
                raise _too_long(batch[i][0], start, n_img, self.max_length, _max_pixels(self.processor), n_vid, _video_max_pixels(self.processor))
        if input_ids.shape[1] > self.max_length:
            enc["input_ids"], enc["attention_mask"] = input_ids[:, : self.max_length], attn[:, : self.max_length]
            labels = labels[:, : self.max_length]
            for k in ("mm_token_type_ids", "token_type_ids"):
                if k in enc:
                    enc[k] = enc[k][:, : self.max_length]
        enc["labels"] = labels
        return dict(enc)

    def _vision_tokens(self, ids: torch.Tensor) -> tuple[int, int]:
        return int((ids == self.image_token_id).sum()), int((ids == self.video_token_id).sum())

    def prompt_lengths(self, batch: Sequence[tuple[Sample, list[Image.Image | Video]]]) -> list[tuple[int, int, int, int]]:
        """(prompt tokens, image tokens, full tokens, video tokens) per sample: the pre-flight check's numbers."""
        out = []
        for sample, media in batch:
            prompt, response = self.texts(sample, media)
            ids = processor_inputs(self.processor, [prompt], [media], return_tensors="pt")["input_ids"][0]
            n_resp = len(self.tokenizer(response, add_special_tokens=False)["input_ids"])
            n_img, n_vid = self._vision_tokens(ids)
            out.append((len(ids), n_img, len(ids) + n_resp, n_vid))
        return out

    def preflight(self, batch: Sequence[tuple[Sample, list[Image.Image | Video]]]) -> dict[str, float]:
        """Raise if a prompt cannot fit `max_length` (saying which budget to cut: length, pixels or
        frames); report how many responses would be cut."""
        lengths = self.prompt_lengths(batch)
        for (sample, _), (p, n_img, _full, n_vid) in zip(batch, lengths):
            if p >= self.max_length:
                raise _too_long(sample, p, n_img, self.max_length, _max_pixels(self.processor), n_vid, _video_max_pixels(self.processor))
        fulls = [f for _, _, f, _ in lengths]
        report = {"max_prompt": max(p for p, *_ in lengths), "max_total": max(fulls), "truncated_share": sum(f > self.max_length for f in fulls) / len(fulls)}
        if any(v for *_, v in lengths):
            report["max_video_tokens"] = max(v for *_, v in lengths)
        return report
