"""The log-prob pass and the SFT loss keep no [rows, length, vocabulary] float32 tensor for backward (the LM head
and log-softmax are recomputed per chunk there), and give the values and gradients of the plain full-logits path."""

from __future__ import annotations

import torch

from m2r.config import ModelConfig
from m2r.data.collate import IGNORE
from m2r.model.load import build_model
from m2r.modules.sft import SFTModule
from m2r.rl.core import sequence_logps, token_logps


def _inputs(processor, n=3, prompt=20, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    V = len(processor.tokenizer)
    ids = torch.randint(10, min(V, 2000), (n, prompt), generator=g)
    completion = torch.randint(10, min(V, 2000), (n, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, completion


def _saved_shapes(fn):
    """Run `fn` under saved-tensor hooks; return the (shape, dtype) of every tensor autograd keeps for backward."""
    kept = []

    def pack(t):
        kept.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, kept


def test_logps_keep_no_full_vocabulary_tensor_and_match_the_full_logits(processor):
    torch.manual_seed(0)
    model = build_model(ModelConfig(), processor).train()
    V = model.get_output_embeddings().weight.shape[0]
    prompt, completion = _inputs(processor)
    n, L = completion.shape
    logps, kept = _saved_shapes(lambda: token_logps(model, prompt, completion, temperature=0.7, chunk=L))
    big = [(s, d) for s, d in kept if d == torch.float32 and len(s) == 3 and s[-1] == V]
    assert big == [], f"kept for backward: {big}"  # one chunk covers all L positions: the old path kept [n, L, V] twice
    logps.sum().backward()
    chunked_grad = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    # the plain path: the model's full logits
    ids = torch.cat([prompt["input_ids"], completion], 1)
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -L - 1 : -1].float() / 0.7
    full = torch.gather(torch.log_softmax(logits, -1), 2, completion[..., None]).squeeze(2)
    assert torch.allclose(logps, full, atol=1e-5)
    full.sum().backward()
    for k, p in model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(chunked_grad[k], p.grad, atol=1e-5, rtol=1e-4), k


def test_sft_loss_is_the_models_own_loss_without_full_logits(processor):
    torch.manual_seed(0)
    model = build_model(ModelConfig(), processor).train()
    V = model.get_output_embeddings().weight.shape[0]
    prompt, completion = _inputs(processor, n=2, prompt=16, length=20, seed=1)
    ids = torch.cat([prompt["input_ids"], completion], 1)
    labels = ids.clone()
    labels[:, :16] = IGNORE  # the prompt is not trained on
    labels[1, -3:] = IGNORE  # padding
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    module = SFTModule(lambda: model, loss_chunk=7)
    module.model = model
    module.log = lambda *a, **k: None
    loss, kept = _saved_shapes(lambda: module._step(batch, "train"))
    assert not [s for s, d in kept if d == torch.float32 and len(s) == 3 and s[-1] == V]
    own = model(**batch).loss
    assert torch.allclose(loss, own, atol=1e-5)
    target = labels[:, 1:]
    logps, hits = sequence_logps(model, ids, batch["attention_mask"], {}, target.masked_fill(target == IGNORE, 0), target.shape[1])
    pred = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits[:, :-1].argmax(-1)
    assert torch.equal(hits, pred == target.masked_fill(target == IGNORE, 0))


def test_shared_prompt_pass_keeps_no_full_vocabulary_tensor(processor):
    """The pass that runs each distinct prompt once (GRPO's micro-batches) ends in the same chunked head."""
    from m2r.rl.core import shared_prompt_hidden

    torch.manual_seed(0)
    model = build_model(ModelConfig(), processor).train()
    V = model.get_output_embeddings().weight.shape[0]
    once, completion = _inputs(processor, n=2)
    index = torch.tensor([0, 0, 1, 1])
    rows = {k: v[index] for k, v in once.items()}
    completion = torch.cat([completion, completion.flip(0)])
    L = completion.shape[1]
    assert shared_prompt_hidden(model, once, index, completion) is not None
    logps, kept = _saved_shapes(lambda: token_logps(model, rows, completion, temperature=0.7, chunk=L, prompts=(once, index)))
    assert not [(s, d) for s, d in kept if d == torch.float32 and len(s) == 3 and s[-1] == V]
    with torch.no_grad():
        assert torch.allclose(logps, token_logps(model, rows, completion, temperature=0.7, chunk=L), atol=1e-5)
