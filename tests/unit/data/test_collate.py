"""The SFT label mask (only assistant tokens count), truncation, and the max_length pre-flight."""

from __future__ import annotations

import pytest

from m2r.data.collate import IGNORE, SequenceTooLongError, SFTCollator
from m2r.data.tasks import generate


def batch(tasks=("spatial/count", "general/word_problem", "general/chart")):
    return [generate(t, i, 0, "train", 168, 0.5) for i, t in enumerate(tasks)]


def test_only_assistant_tokens_are_labelled(processor):
    items = batch()
    enc = SFTCollator(processor, max_length=1024)(items)
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<|image_pad|>")
    for i, (sample, imgs) in enumerate(items):
        labels, ids, attn = enc["labels"][i], enc["input_ids"][i], enc["attention_mask"][i]
        kept = labels != IGNORE
        # Exactly the response and its end-of-turn token, nothing of the system/user turns.
        assert tok.decode(labels[kept]) == sample.cot + "<|im_end|>"
        assert (labels[kept] == ids[kept]).all()
        # One contiguous span at the end of the real tokens (minus the template's trailing newline).
        idx = kept.nonzero().flatten()
        assert (idx.diff() == 1).all() and int(idx[-1]) == int(attn.sum()) - 2
        assert not kept[ids == image_id].any() and not kept[attn == 0].any()
        assert (ids == image_id).sum() == (36 if imgs else 0)
        assert "How many" in tok.decode(ids[: idx[0]]) or "shelf" in tok.decode(ids[: idx[0]]) or "bar" in tok.decode(ids[: idx[0]])


def test_truncation_cuts_the_response_not_the_image(processor):
    items = batch(("spatial/abs_distance",))
    full = SFTCollator(processor, max_length=4096)(items)
    limit = int((full["labels"][0] != IGNORE).nonzero()[0]) + 5  # the prompt + 5 response tokens
    assert full["input_ids"].shape[1] > limit + 20
    cut = SFTCollator(processor, max_length=limit)(items)
    assert cut["input_ids"].shape[1] == limit
    assert (cut["labels"][0] != IGNORE).sum() == 5
    assert (cut["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum() == 36


def test_preflight_says_what_to_change(processor):
    items = batch(("spatial/depth",))
    with pytest.raises(SequenceTooLongError, match=r"data.max_length=40.*model.max_pixels") as e:
        SFTCollator(processor, max_length=40).preflight(items)
    assert "36 of them image tokens" in str(e.value)
    report = SFTCollator(processor, max_length=1024).preflight(items)
    assert report["truncated_share"] == 0 and report["max_prompt"] > 36
