"""The embedded held-out benchmark, VSI-Bench video decoding, and totality of every scorer."""

from __future__ import annotations

import numpy as np
import pytest

from m2r.eval import embedded, vsibench
from m2r.eval.runner import BENCHMARKS, score_benchmark


def test_embedded_benchmark_ground_truth_and_mra(shard_root):
    items = embedded.load(shard_root, "val")
    from m2r.data.tasks import all_tasks

    assert len(items) == 2 * len(all_tasks()) and all(it.key["id"].startswith("val-") for it in items)
    traces = [it.meta["sample"]["cot"] for it in items]
    _, m = score_benchmark("embedded", items, traces)
    assert m["overall"] == 1.0 and m["spatial"] == 1.0 and m["general"] == 1.0 and m["video"] == 1.0
    spatial_num = next(it for it in items if it.meta["task"] == "spatial/abs_distance" and it.meta["sample"]["answer_type"] == "number")
    gt = float(spatial_num.answer)
    s = embedded.score(spatial_num, f"<think>I estimate.</think><answer>\\boxed{{{gt * 1.1}}}</answer>")
    assert s["score"] == pytest.approx(vsibench.mra(gt * 1.1, gt)) and 0 < s["score"] < 1
    assert embedded.score(spatial_num, f"<answer>\\boxed{{{gt}}}</answer>")["score"] == 0.0  # the RL rewards' strict reading: no closed think


def test_vsibench_decodes_videos(tmp_path):
    av = pytest.importorskip("av")
    (tmp_path / "scannet").mkdir()
    with av.open(str(tmp_path / "scannet" / "s0.mp4"), "w") as c:
        stream = c.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(20):
            for p in stream.encode(av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 12, np.uint8), format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    (tmp_path / "test.jsonl").write_text('{"id": 0, "dataset": "scannet", "scene_name": "s0", "question_type": "object_counting", "question": "How many?", "options": null, "ground_truth": "2"}\n')
    frames = vsibench.load(tmp_path, num_frames=4)[0].open_images()
    # Frames 0, 6, 13, 19 of 20 (uniform), grey levels 12 * index up to compression noise.
    assert len(frames) == 4
    assert [f.getpixel((16, 16))[0] for f in frames] == pytest.approx([0, 72, 156, 228], abs=12)


def test_vsibench_rows_reach_the_model_as_a_video(tmp_path, processor):
    """The sampled frames go in through the processor's video path (one video, its frames in temporal patches, the
    real time between them), not as separate images; benchmark.fps samples the length times the rate."""
    av = pytest.importorskip("av")
    from m2r.config import ModelConfig
    from m2r.data.media import Video
    from m2r.eval.runner import generate_responses
    from m2r.model.load import build_model

    (tmp_path / "scannet").mkdir()
    with av.open(str(tmp_path / "scannet" / "s0.mp4"), "w") as c:
        stream = c.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 56, 56, "yuv420p"
        for i in range(20):  # 4 s
            for p in stream.encode(av.VideoFrame.from_ndarray(np.full((56, 56, 3), i * 12, np.uint8), format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    (tmp_path / "test.jsonl").write_text('{"id": 0, "dataset": "scannet", "scene_name": "s0", "question_type": "object_counting", "question": "How many?", "options": null, "ground_truth": "2"}\n')
    items = vsibench.load(tmp_path, num_frames=4)
    (video,) = items[0].open_media()
    assert isinstance(video, Video) and video.timestamps == pytest.approx([0.0, 1.2, 2.6, 3.8]) and video.fps == pytest.approx(4 * 5 / 20)
    assert len(vsibench.load(tmp_path, num_frames=16, fps=2.0)[0].open_media()[0]) == 8  # 4 s x 2 fps
    with pytest.raises(ValueError, match="benchmark.fps"):
        vsibench.load(tmp_path, fps=0)
    model = build_model(ModelConfig(), processor).eval()
    grids = []
    handle = model.model.visual.register_forward_pre_hook(lambda m, a, kw: grids.append(kw["grid_thw"].tolist()), with_kwargs=True)
    try:
        (response,) = generate_responses(model, processor, items, "vsibench", batch_size=1, max_new_tokens=2)
    finally:
        handle.remove()
    assert grids == [[[2, 4, 4]]]  # one video: 4 frames in 2 temporal patches of 56x56 px


NASTY = ["", "a" * 1_000_000, "\\boxed{" * 20_000, "<answer></answer>", "\\boxed{10^{10^{10^{10}}}}", "{" * 50_000, "<Answer>: <<", "π" * 1000, '{"short answer": null}']


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_scorer_is_total(name):
    from m2r.eval.items import EvalItem

    module = BENCHMARKS[name]
    metas = {
        "mathvista": {"question_type": "free_form", "answer_type": "float", "precision": 2.0},
        "dynamath": {"answer_type": "float"}, "logicvista": {"skills": ["inductive"]}, "mathverse": {"question_type": "free-form"},
        "cvbench": {"task": "Count", "source": "COCO"}, "vsibench": {"question_type": "object_abs_distance"},
        "embedded": {"task": "spatial/abs_distance", "sample": {"id": "x", "task": "spatial/abs_distance", "question": "q", "answer": "2.5", "answer_type": "number"}},
    }
    item = EvalItem(key={"id": "x"}, question="q", options=["1", "2"], answer="2.5", meta=metas.get(name, {}))
    for r in NASTY:
        out = module.score(item, r)
        assert out["correct"] in (True, False)


def test_a_scorer_that_raises_counts_the_row_wrong(monkeypatch):
    """One strange response must not end a whole evaluation: the row is wrong, the others are scored."""
    from m2r.eval import mathvision
    from m2r.eval.items import EvalItem

    real = mathvision.score
    monkeypatch.setattr(mathvision, "score", lambda it, r: (_ for _ in ()).throw(ValueError("boom")) if "boom" in r else real(it, r))
    items = [EvalItem(key={"id": str(i)}, question="q", options=[], answer="2") for i in range(2)]
    samples, metrics = score_benchmark("mathvision", items, ["\\boxed{2}", "boom"])
    assert [s["correct"] for s in samples] == [True, False]


def test_blind_baseline_is_the_best_constant_answer_per_answer_type():
    from m2r.eval.items import EvalItem

    def item(task, answer_type, answer):
        return EvalItem(key={"id": "x"}, question="q", options=[], answer=answer, meta={"task": task, "sample": {"task": task, "answer_type": answer_type, "answer": answer}})

    items = [item("spatial/relation", "choice", a) for a in "AAAB"]  # majority letter: 3 of 4
    # count: two choice rows (A, B: 1 of 2 right) and three numeric rows scored by MRA; the best constant among 2, 2, 9
    # is 2 (MRA 1 + 1 + 0; 9 gives 0 + 0 + 1), so (1 + 2) / 5.
    items += [item("spatial/count", "choice", "A"), item("spatial/count", "choice", "B")] + [item("spatial/count", "number", v) for v in ("2", "2", "9")]
    items += [item("general/arithmetic", "number", v) for v in ("7", "7", "7", "8")] + [item("general/arithmetic", "choice", "C")]  # exact: 3 + 1 of 5
    blind = embedded.blind_baseline(items)
    assert blind == pytest.approx({"spatial/relation": 0.75, "spatial/count": 3 / 5, "general/arithmetic": 4 / 5})
    # MRA gives partial credit: with 4 instead of 9, the constant 2 also earns 0.1 on it (|2 - 4| / 4 = 0.5).
    near = items[:6] + [item("spatial/count", "number", v) for v in ("2", "2", "4")]
    assert embedded.blind_baseline(near)["spatial/count"] == pytest.approx((1 + 2.1) / 5)
    metrics = embedded.aggregate(items, [1.0] * len(items))
    assert metrics["blind/spatial/relation"] == 0.75 and "blind/general/arithmetic" in metrics


def test_blind_baseline_reads_numbers_as_the_schema_does():
    from m2r.eval.items import EvalItem

    rows = [("1,200", "number"), ("1200", "number"), ("900", "number")]
    items = [EvalItem(key={"id": "x"}, question="q", options=[], answer=a, meta={"task": "spatial/room_size", "sample": {"task": "spatial/room_size", "answer_type": t, "answer": a}}) for a, t in rows]
    # 1200 is exact on two rows; on 900, |1200 - 900| / 900 = 0.33 earns the thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10).
    assert embedded.blind_baseline(items)["spatial/room_size"] == pytest.approx((2 + 0.4) / 3)
