"""Videos through the model path: a batch that mixes an image sample, a video sample (and one with both) and a
text-only sample goes through the processor, row selection, SFT and GRPO log-probs on the tiny Qwen2.5-VL, and each
row's numbers equal those of the same row computed alone."""

from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

from m2r.config import ModelConfig
from m2r.data.collate import M2_SYSTEM_PROMPT, IGNORE, SFTCollator, build_messages
from m2r.data.media import Video, processor_inputs
from m2r.data.schema import Sample
from m2r.model.load import build_model
from m2r.rl.core import token_logps
from m2r.rl.rollout import generate_rollouts, media_per_prompt, prompt_inputs, select_rows, vision_token_ids


def _frames(seed: int, n: int, size: int = 56) -> list[Image.Image]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        img.paste(tuple(rng.randrange(256) for _ in range(3)), (rng.randrange(size // 2), rng.randrange(size // 2), size - 4, size - 4))
        out.append(img)
    return out


def _sample(sid: str, task: str, n_img: int, video_frames: list[int], cot: str = "<think>\nI look.\n</think>\n<answer>\nThe answer is 3. \\boxed{3}\n</answer>",
            question: str | None = None) -> Sample:
    videos = [{"frames": [f"vid{v}_f{i:03d}.png" for i in range(n)], "fps": 1.0} for v, n in enumerate(video_frames)]
    return Sample(id=sid, task=task, question=question or f"How many objects in {sid}?", answer="3", answer_type="number", images=[f"img{i}.png" for i in range(n_img)], videos=videos, cot=cot)


@pytest.fixture(scope="module")
def mixed():
    """(Sample, media) pairs: one image; one video of 6 frames at 2 fps; an image and a 3-frame video (odd: padded to a
    temporal pair); text only."""
    img = _frames(1, 1, 84)[0]
    return [
        (_sample("img", "spatial/count", 1, []), [img]),
        (_sample("vid", "spatial/video/obj_count", 0, [6]), [Video(_frames(2, 6), fps=2.0)]),
        # a short question: the video's temporal positions must run past the text after it (however the tokenizer splits it)
        (_sample("both", "spatial/video/obj_count", 1, [3], question="How many?"), [_frames(3, 1, 56)[0], Video(_frames(4, 3), fps=0.5)]),
        (_sample("text", "general/word_problem", 0, []), []),
    ]


@pytest.fixture(scope="module")
def model(processor):
    return build_model(ModelConfig(), processor)


def test_processor_gets_videos_with_their_fps(processor, mixed):
    enc = prompt_inputs(processor, mixed, 1)
    assert enc["video_grid_thw"].tolist() == [[3, 4, 4], [2, 4, 4]]  # 6 frames -> 3 temporal patches; 3 -> 2 (last frame repeated)
    # Qwen2.5-VL's temporal scale: temporal_patch_size / fps seconds per temporal patch
    assert enc["second_per_grid_ts"].tolist() == pytest.approx([2 / 2.0, 2 / 0.5])
    assert enc["image_grid_thw"].shape[0] == 2
    vid = processor.video_token_id
    assert [int((r == vid).sum()) for r in enc["input_ids"]] == [0, 3 * 4 * 4 // 4, 2 * 4 * 4 // 4, 0]


def test_selected_rows_equal_processing_each_copy(processor, mixed):
    """prompt_inputs repeats each prompt G times by selecting rows (pixels and per-video seconds included); the result
    equals running the processor on G copies."""
    G = 3
    texts = [processor.apply_chat_template(build_messages(s, m, M2_SYSTEM_PROMPT), tokenize=False, add_generation_prompt=True) for s, m in mixed]
    side, processor.tokenizer.padding_side = processor.tokenizer.padding_side, "left"
    try:
        direct = dict(processor_inputs(processor, [t for t in texts for _ in range(G)], [m for _, m in mixed for _ in range(G)], padding=True, return_tensors="pt"))
    finally:
        processor.tokenizer.padding_side = side
    once = prompt_inputs(processor, mixed, G)
    assert set(once) == set(direct) and "pixel_values_videos" in once
    for k in direct:
        assert torch.equal(once[k], direct[k]), k
    # A subset in another order: row 1 (video) and row 0 (image) give exactly their own items.
    sub = select_rows(prompt_inputs(processor, mixed, 1), [1, 0], *media_per_prompt(mixed))
    assert sub["video_grid_thw"].tolist() == [[3, 4, 4]] and sub["image_grid_thw"].shape[0] == 1
    assert sub["second_per_grid_ts"].tolist() == [1.0]
    with pytest.raises(ValueError, match="claim 1 video"):
        select_rows(prompt_inputs(processor, mixed, 1), [0], [1, 0, 1, 0], [0, 1, 0, 0])  # miscounted: 1 video, 2 in the grid


def _row_label_logps(model, enc) -> torch.Tensor:
    """Sum of log p(label) over each row's labelled tokens."""
    out = model(**{k: v for k, v in enc.items() if k != "labels"})
    logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
    labels = enc["labels"][:, 1:]
    mask = labels != IGNORE
    picked = torch.gather(logp, 2, labels.clamp(min=0)[..., None]).squeeze(-1)
    return (picked * mask).sum(1)


def test_sft_mixed_batch_equals_each_sample_alone_and_trains(processor, mixed, model):
    collate = SFTCollator(processor, max_length=1024)
    enc = collate(mixed)
    assert "pixel_values_videos" in enc and "pixel_values" in enc
    model.eval()
    with torch.no_grad():
        batch = _row_label_logps(model, enc)
        alone = torch.cat([_row_label_logps(model, collate([x])) for x in mixed])
    assert torch.allclose(batch, alone, atol=1e-4), (batch, alone)
    report = collate.preflight(mixed)
    assert report["max_video_tokens"] == 12
    # One optimizer step on the mixed batch: a finite loss, and the vision tower's weights move (videos reach it).
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = model(**enc).loss
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any("visual" in n for n in moved) and any("language_model" in n for n in moved)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    model.eval()


@pytest.fixture(scope="module")
def sharp_model(processor):
    """The tiny model at init std 0.08: logits far enough apart that greedy tokens are not decided by rounding."""
    cfg = ModelConfig()
    cfg.tiny.initializer_range = 0.08
    return build_model(cfg, processor).eval()


@pytest.mark.parametrize("mode", ["shared", "full", "static"])
def test_greedy_rollouts_are_the_scoring_forwards_argmax(processor, mixed, sharp_model, mode):
    """Each greedily decoded token is the argmax of a forward over prompt + completion (the positions `token_logps`
    scores with), whether the prompt is prefilled once per group, per row, or into a static cache. The image+video
    prompt has a video whose temporal positions run past the text after it, the case where a prefill's own rotary
    offset would start decoding two positions too far (it did: another first token)."""
    both = prompt_inputs(processor, [mixed[2]], 1)
    rope = sharp_model.model
    pos, _ = rope.get_rope_index(**{k: v for k, v in both.items() if k in ("input_ids", "mm_token_type_ids", "image_grid_thw", "video_grid_thw", "second_per_grid_ts", "attention_mask")})
    assert int(pos.max()) > int(pos[:, 0, -1].max())  # the case is exercised
    kw = {"shared": {}, "full": {"share_prefill": False}, "static": {"cache": "static"}}[mode]
    ro = generate_rollouts(sharp_model, processor, mixed, 2, 4, temperature=1e-4, seed=0, **kw)
    inputs, comp = ro.prompt_inputs, ro.completion_ids
    ids = torch.cat([inputs["input_ids"], comp], 1)
    full = dict(inputs, input_ids=ids, attention_mask=torch.cat([inputs["attention_mask"], torch.ones_like(comp)], 1))
    full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(comp)], 1)
    with torch.no_grad():
        logits = sharp_model(**full).logits[:, inputs["input_ids"].shape[1] - 1 : -1]
    logits[..., vision_token_ids(sharp_model, processor)] = float("-inf")  # the sampler never draws these
    argmax = logits.argmax(-1)
    valid = ro.completion_mask.bool()
    assert valid[:, 0].all()
    assert torch.equal(argmax[valid], comp[valid]), (mode, comp.tolist(), argmax.tolist())


def test_preflight_names_frames_and_video_pixels(processor, mixed):
    from m2r.data.collate import SequenceTooLongError

    with pytest.raises(SequenceTooLongError, match=r"12 video tokens.*data.num_frames; this sample has 6.*model.video_max_pixels"):
        SFTCollator(processor, max_length=60).preflight([mixed[1]])


def test_rollouts_and_logps_on_a_mixed_batch_equal_each_prompt_alone(processor, mixed, model):
    """G rollouts per prompt on the mixed batch; the log-probs of every row, by whole rows and by the shared-prompt pass,
    equal those of the same prompt and completion run as a batch of one; a policy-gradient step moves the weights."""
    model.eval()
    G = 2
    ro = generate_rollouts(model, processor, mixed, G, max_new_tokens=6, seed=0)
    assert ro.videos_per_row == [0, 0, 1, 1, 1, 1, 0, 0] and ro.images_per_row == [1, 1, 0, 0, 1, 1, 0, 0]
    with torch.no_grad():
        whole = token_logps(model, ro.prompt_inputs, ro.completion_ids)
        once = select_rows(ro.prompt_inputs, [b * G for b in range(len(mixed))], ro.images_per_row, ro.videos_per_row)
        shared = token_logps(model, ro.prompt_inputs, ro.completion_ids, prompts=(once, torch.arange(len(mixed)).repeat_interleave(G)))
        for b, item in enumerate(mixed):
            alone_inputs = prompt_inputs(processor, [item], 1)
            for r in range(b * G, (b + 1) * G):
                n = int(ro.completion_mask[r].sum())
                alone = token_logps(model, alone_inputs, ro.completion_ids[r : r + 1, :n])
                assert torch.allclose(whole[r, :n], alone[0], atol=1e-4), (item[0].id, whole[r, :n], alone[0])
                assert torch.allclose(shared[r, :n], alone[0], atol=1e-4), item[0].id
    # The shared prefill (each prompt, its video included, once) decodes as the full prefill does.
    g1 = generate_rollouts(model, processor, mixed, G, 6, temperature=1e-4, seed=0)
    g2 = generate_rollouts(model, processor, mixed, G, 6, temperature=1e-4, seed=0, share_prefill=False)
    assert torch.equal(g1.completion_ids, g2.completion_ids)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    adv = torch.tensor([1.0, -1.0] * len(mixed))
    lp = token_logps(model, ro.prompt_inputs, ro.completion_ids)
    loss = -(adv[:, None] * lp * ro.completion_mask).sum() / ro.completion_mask.sum()
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    assert any("visual" in n and not torch.equal(p, before[n]) for n, p in model.named_parameters())
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])
    model.eval()
