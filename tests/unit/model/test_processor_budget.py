"""The pixel budget reaches a local checkpoint's processor as its `size`, with no deprecated call-time kwargs."""

from __future__ import annotations

import warnings

from PIL import Image

from m2r.config import ModelConfig
from m2r.model.load import load_processor


def test_local_processor_takes_the_budget_without_deprecation_warnings(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    prompt = ["<|vision_start|><|image_pad|><|vision_end|> hi"]
    grids = []
    for budget in (12544, 200704):
        p = load_processor(ModelConfig(source="pretrained", path=str(tmp_path), min_pixels=3136, max_pixels=budget), tmp_path / "cache")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # transformers' FutureWarning for min_pixels/max_pixels passed at call time
            out = p(text=prompt, images=[Image.new("RGB", (600, 560))], return_tensors="pt")
        t, h, w = out["image_grid_thw"][0].tolist()
        assert h * w * 14 * 14 <= budget
        grids.append(h * w)
    assert grids[0] < grids[1]  # the budget is what sizes the image
