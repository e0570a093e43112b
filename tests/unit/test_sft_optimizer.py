"""SFTModule's AdamW groups (`m2r.modules.sft.decay_groups`): decay on matrices only, frozen weights left out."""

from __future__ import annotations

import torch

from m2r.modules.sft import decay_groups


def test_matrices_decay_and_biases_norms_and_frozen_weights_do_not():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False), torch.nn.Embedding(3, 4))
    model[3].weight.requires_grad_(False)
    decay, no_decay = decay_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}
