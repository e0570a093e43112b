"""The embedded default model: a random-init Qwen2.5-VL built from config, with a real processor.

The processor is the ordinary `Qwen2_5_VLProcessor` (Qwen2-VL image and video processors with
small pixel budgets) around a byte-level BPE tokenizer that the project trains with `tokenizers`
on text from its own generators, so nothing is downloaded. The tokenizer has the Qwen chat
special tokens and the M2 response tags. Training is deterministic for a given config, and the
built processor is cached under `cache_dir/tiny_processor/<hash of its inputs>/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

from m2r.config import ModelConfig

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]  # added, not special: decoding keeps them

# Our own chat template, in the Qwen2-VL layout (system turn first, images as
# <|vision_start|><|image_pad|><|vision_end|> where the content lists them).
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' -%}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

_BASE_TEXT = (
    "You are a helpful assistant. When the user asks a question, your response must include two parts: "
    "first, the reasoning process enclosed in <think>...</think> tags, then the final answer enclosed in "
    "<answer>...</answer> tags. The critical answer or key result should be placed within \\boxed{}. "
    "Question: Options: A. B. C. D. E. The answer is 0 1 2 3 4 5 6 7 8 9 . , ; : ? ! ( ) [ ] { } + - * / = ^ < > % $ "
    "Let me verify. the a an of to in is it that which what how many where left right above below closer farther "
)


def _corpus(cfg: ModelConfig) -> list[str]:
    from m2r.data.schema import format_question
    from m2r.data.tasks import all_tasks, generate

    texts = [_BASE_TEXT]
    for task in all_tasks():
        for i in range(cfg.tiny.corpus_samples_per_task):
            # 56 px images and frames keep corpus generation fast; the texts do not depend on them much.
            s, _ = generate(task, i, seed=12345, split="tokenizer", image_size=56, mc_ratio=0.5, num_frames=8)
            texts.append(format_question(s))
            texts.append(s.cot or "")
    from m2r.data.perceive import perception_sample  # the perception warm-up's question and listings

    for i in range(cfg.tiny.corpus_samples_per_task):
        s, _ = perception_sample(random.Random(f"tokenizer/perceive/{i}"), 112, (2, 6))
        texts += [format_question(s), s.cot]
    return texts


def train_tokenizer(cfg: ModelConfig):
    """Train the byte-level BPE tokenizer on the embedded corpus; returns a PreTrainedTokenizerFast."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Digits split one by one (as Qwen does), then byte-level pieces.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r"\p{N}"), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.tiny.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(cfg), trainer=trainer)
    tok.add_tokens(TAG_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        padding_side="right",
        extra_special_tokens={
            "image_token": "<|image_pad|>",
            "video_token": "<|video_pad|>",
            "vision_start_token": "<|vision_start|>",
            "vision_end_token": "<|vision_end|>",
        },
    )


def build_tiny_processor(cfg: ModelConfig):
    """Qwen2.5-VL processor with the project's tokenizer and `cfg.min_pixels`/`max_pixels` (not cached).

    Also the processor of `source=random` models, whose YAMLs carry the released pixel budgets.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = train_tokenizer(cfg)
    pix = {"min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pix),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**pix),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_processor_key(cfg: ModelConfig) -> str:
    from m2r.data.tasks import EMBEDDED_VERSION, all_tasks

    # The corpus is the embedded generators' text: their version is part of the key (v3: the perception listings joined it).
    blob = json.dumps(
        {"tiny": {k: getattr(cfg.tiny, k) for k in ("vocab_size", "corpus_samples_per_task")}, "min_pixels": cfg.min_pixels, "max_pixels": cfg.max_pixels, "template": CHAT_TEMPLATE, "base": _BASE_TEXT, "tasks": sorted(all_tasks()),
         "generators": EMBEDDED_VERSION, "v": 3},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_tiny_processor(cfg: ModelConfig, cache_dir: str | os.PathLike):
    """The tiny processor from the cache, building and caching it on first use."""
    from transformers import AutoProcessor

    target = Path(cache_dir) / "tiny_processor" / tiny_processor_key(cfg)
    if not (target / "processor_config.json").exists() and not (target / "preprocessor_config.json").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".build-"))
        build_tiny_processor(cfg).save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: concurrent runs never see half a processor
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    return AutoProcessor.from_pretrained(target)


def special_token_ids(tokenizer) -> dict[str, int]:
    """The model-config ids of the vision placeholders and boundaries, as the tokenizer has them."""
    names = {"image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>", "vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>"}
    return {key: tokenizer.convert_tokens_to_ids(tok) for key, tok in names.items()}


def tiny_model_config(cfg: ModelConfig, tokenizer):
    from transformers import Qwen2_5_VLConfig

    t = cfg.tiny
    head_dim = t.hidden_size // t.num_attention_heads
    half = head_dim // 2
    # Multimodal RoPE splits each head's rotary frequencies over (time, height, width).
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "initializer_range": t.initializer_range,
        },
        vision_config={
            "depth": t.vision_depth,
            "hidden_size": t.vision_hidden_size,
            "intermediate_size": t.vision_intermediate_size,
            "num_heads": t.vision_num_heads,
            "out_hidden_size": t.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [t.vision_depth - 1],
            "initializer_range": t.initializer_range,
        },
        tie_word_embeddings=True,
        initializer_range=t.initializer_range,
        **special_token_ids(tokenizer),
    )
