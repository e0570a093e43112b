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


def build_messages(sample: Sample, n_images: int, system_prompt: str | None, response: str | None = None) -> list[dict]:
    msgs: list[dict] = []
    if system_prompt:
        msgs.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": format_question(sample)}]
    msgs.append({"role": "user", "content": content})
    if response is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": response}]})
    return msgs


def _max_pixels(processor) -> Any:
    size = getattr(processor.image_processor, "size", None)
    return (size.get("longest_edge") if hasattr(size, "get") else getattr(size, "longest_edge", None)) or "?"


def _too_long(sample: Sample, prompt_len: int, image_tokens: int, max_length: int, max_pixels: Any) -> SequenceTooLongError:
    return SequenceTooLongError(
        f"sample {sample.id!r}: the prompt alone is {prompt_len} tokens ({image_tokens} of them image tokens) but "
        f"data.max_length={max_length}. Raise data.max_length (e.g. data.max_length={prompt_len + 256}) or lower "
        f"model.max_pixels (now {max_pixels}; each 28x28 pixel block is one image token for Qwen2.5-VL)."
    )


class SFTCollator:
    """Batches (Sample, images) pairs into `input_ids, attention_mask, labels, pixel_values, ...`."""

    def __init__(self, processor, max_length: int, system_prompt: str | None = M2_SYSTEM_PROMPT):
        self.processor, self.max_length, self.system_prompt = processor, max_length, system_prompt
        self.tokenizer = processor.tokenizer
        self.image_token_id = getattr(processor, "image_token_id", None) or self.tokenizer.convert_tokens_to_ids(getattr(processor, "image_token", "<|image_pad|>"))

    def texts(self, sample: Sample, n_images: int) -> tuple[str, str]:
        """(prompt text with generation prompt, response suffix) as the chat template renders them."""
        if not sample.cot:
            raise ValueError(f"sample {sample.id!r} has no 'cot'; SFT needs a reasoning trace as its target")
        prompt = self.processor.apply_chat_template(build_messages(sample, n_images, self.system_prompt), tokenize=False, add_generation_prompt=True)
        full = self.processor.apply_chat_template(build_messages(sample, n_images, self.system_prompt, sample.cot), tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template does not render the conversation as prompt + response; SFT cannot locate the response span")
        return prompt, full[len(prompt):]

    def __call__(self, batch: Sequence[tuple[Sample, list[Image.Image]]]) -> dict[str, torch.Tensor]:
        texts, responses, images = [], [], []
        for sample, imgs in batch:
            prompt, response = self.texts(sample, len(imgs))
            texts.append(prompt + response)
            responses.append(response)
            images.extend(imgs)
        # Right padding, so each response ends at its row's last real token.
        self.tokenizer.padding_side = "right"
        enc = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
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
                n_img = int((input_ids[i, :start] == self.image_token_id).sum())
                raise _too_long(batch[i][0], start, n_img, self.max_length, _max_pixels(self.processor))
        if input_ids.shape[1] > self.max_length:
            enc["input_ids"], enc["attention_mask"] = input_ids[:, : self.max_length], attn[:, : self.max_length]
            labels = labels[:, : self.max_length]
            for k in ("mm_token_type_ids", "token_type_ids"):
                if k in enc:
                    enc[k] = enc[k][:, : self.max_length]
        enc["labels"] = labels
        return dict(enc)

    def prompt_lengths(self, batch: Sequence[tuple[Sample, list[Image.Image]]]) -> list[tuple[int, int, int]]:
        """(prompt tokens, image tokens, full tokens) per sample: the pre-flight check's numbers."""
        out = []
        for sample, imgs in batch:
            prompt, response = self.texts(sample, len(imgs))
            ids = self.processor(text=[prompt], images=imgs or None, return_tensors="pt")["input_ids"][0]
            n_resp = len(self.tokenizer(response, add_special_tokens=False)["input_ids"])
            out.append((len(ids), int((ids == self.image_token_id).sum()), len(ids) + n_resp))
        return out

    def preflight(self, batch: Sequence[tuple[Sample, list[Image.Image]]]) -> dict[str, float]:
        """Raise if a prompt cannot fit `max_length`; report how many responses would be cut."""
        lengths = self.prompt_lengths(batch)
        for (sample, _), (p, n_img, _full) in zip(batch, lengths):
            if p >= self.max_length:
                raise _too_long(sample, p, n_img, self.max_length, _max_pixels(self.processor))
        fulls = [f for _, _, f in lengths]
        return {"max_prompt": max(p for p, _, _ in lengths), "max_total": max(fulls), "truncated_share": sum(f > self.max_length for f in fulls) / len(fulls)}
