"""Golden cases for the VSI-Bench scorer, and frame sampling by seeking on a 10,000-frame video.

Each verdict is what `vsibench_process_results` in vision-x-nyu/thinking-in-space
(`lmms_eval/tasks/vsibench/utils.py`, commit 51e089c) returns, derived from its code path:
`fuzzy_matching` (first token split on " ", trailing "." removed, stripped), then `exact_match`
(case-insensitive) for multiple choice, or `to_float` + `mean_relative_accuracy` (thresholds
numpy.linspace(0.5, 0.95, 10), float comparisons as written) for numbers, `WORST_CASE_FOR_METRICS`
(0) when `to_float` gives None. Responses are stripped first, as the harness's model wrappers do.

Cases marked DEPARTURE are M2-format responses (think/answer tags, `\\boxed{}`): the official
code reads their first token ("<think>..." or "\\boxed{3}": score 0); their verdict here is the
official rule applied to the answer our reader takes out of the tags and box (module docstring,
departure 1).
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from m2r.eval import vsibench
from m2r.eval.items import EvalItem

CHOICE_CASES = [
    # (response, official score)  # official code path; ground truth "B"
    ("B", 1.0),  # exact_match
    ("b", 1.0),  # exact_match: pred.lower() == target.lower()
    ("B.", 1.0),  # fuzzy_matching: rstrip('.')
    ("b...", 1.0),  # rstrip('.') removes every trailing period
    ("B. sofa", 1.0),  # fuzzy_matching: first token "B." -> "B"
    ("B .", 1.0),  # first token "B"
    ("B\n", 1.0),  # token "B\n": rstrip('.') then strip() -> "B"
    ("(B)", 0.0),  # no parenthesis stripping: "(b)" != "b"
    ("B)", 0.0),  # "b)" != "b"
    ("B:", 0.0),  # "b:" != "b"
    ("Option B", 0.0),  # first token "Option"
    ("B.\nBecause the sofa is closer", 0.0),  # split on " " only: token "B.\nBecause" (rstrip('.') finds no trailing ".")
    ("B\nsofa", 0.0),  # token "B\nsofa"
    ("A", 0.0),  # "a" != "b"
    ("", 0.0),  # "" != "b"
    (" B", 1.0),  # fuzzy_matching alone would give "" (split on the leading space); the model wrappers strip the output first
    # DEPARTURE (tags/box read first, then the official rule on what they hold):
    ("<think>left or right?</think><answer>\\boxed{B}</answer>", 1.0),  # box "B"
    ("<think>x</think><answer>B. sofa</answer>", 1.0),  # answer tag "B. sofa" -> "B"
    ("<think>x</think><answer>\\boxed{(B)}</answer>", 0.0),  # box "(B)": exact match fails as above
    ("<think>B</think><answer></answer>", 0.0),  # empty answer
]

NUMERIC_CASES = [
    # (question_type, ground truth, response, official score)  # official code path
    ("object_counting", "4", "4", 1.0),  # to_float("4"); relative error 0 <= every 1 - theta
    ("object_counting", "4", "4.", 1.0),  # fuzzy_matching rstrip('.') -> "4"
    ("object_counting", "4", "4.0", 1.0),  # float("4.0")
    ("object_counting", "4", "4 chairs", 1.0),  # first token "4"
    ("object_counting", "4", "4\n", 1.0),  # strip()
    ("object_counting", "4", "four", 0.0),  # to_float -> None -> TypeError -> WORST_CASE 0
    ("object_counting", "4", "There are 4 chairs.", 0.0),  # first token "There": None -> 0
    ("object_counting", "4", "5", 0.6),  # error 0.25 <= 1 - theta for theta in 0.50..0.75 (6 of 10)
    ("object_counting", "4", "3", 0.6),  # error 0.25, symmetric
    ("object_counting", "4", "6", 0.1),  # error 0.5 <= 1 - 0.5 only
    ("object_counting", "4", "2", 0.1),  # error 0.5
    ("object_counting", "4", "7", 0.0),  # error 0.75 > 0.5
    ("object_counting", "4", "-4", 0.0),  # float("-4"): error 2
    ("object_abs_distance", "2.0", "2.2", 0.9),  # error 0.1000..02 <= 1 - linspace[8] (0.1000..01): 9 of 10
    ("object_abs_distance", "2.0", "2.2 m", 0.9),  # first token "2.2"
    ("object_abs_distance", "2.0", "2.2m", 0.0),  # float("2.2m") raises -> 0
    ("object_abs_distance", "2.0", "2e0", 1.0),  # float("2e0") == 2.0
    ("object_abs_distance", "2.0", "nan", 0.0),  # float("nan"): every comparison False
    ("object_abs_distance", "2.0", "inf", 0.0),  # float("inf"): error inf
    ("object_size_estimation", "100", "95", 1.0),  # error 0.05 <= 1 - 0.95 (0.050000000000000044)
    ("object_size_estimation", "100", "150", 0.1),  # error 0.5
    ("object_size_estimation", "100", "89.9", 0.8),  # error 0.101 > 0.1000..01: thresholds 0.50..0.85
    ("object_size_estimation", "100", "1,000", 0.0),  # float("1,000") raises -> 0
    ("room_size_estimation", "20", "2_0", 1.0),  # Python's float() accepts digit underscores
    ("room_size_estimation", "20", "12.5", 0.3),  # error 0.375 <= 1 - theta for theta 0.50, 0.55, 0.60
    # DEPARTURE (tags/box read first, then the official rule on what they hold):
    ("room_size_estimation", "20", "\\boxed{20}", 1.0),  # box "20" (official: token "\boxed{20}", 0)
    ("room_size_estimation", "20", "<think>x</think><answer>\\boxed{22}</answer>", 0.9),  # box "22": error 0.1
    ("object_abs_distance", "3.5", "<think>x</think><answer>\\boxed{3.5 m}</answer>", 1.0),  # box "3.5 m" -> token "3.5"
    ("object_abs_distance", "3.5", "<think>x</think><answer>\\boxed{3.5\\text{ m}}</answer>", 0.0),  # token "3.5\text{": float raises
    ("object_counting", "4", "<think>4</think><answer></answer>", 0.0),  # empty answer
]


@pytest.mark.parametrize("response, official", CHOICE_CASES)
def test_choice_official_verdict(response, official):
    item = EvalItem(key={"id": 0}, question="q", options=["A. bed", "B. sofa"], answer="B", meta={"question_type": "object_rel_distance"})
    out = vsibench.score(item, response)
    assert out["score"] == official and out["correct"] is (official == 1.0)


@pytest.mark.parametrize("question_type, gt, response, official", NUMERIC_CASES)
def test_numeric_official_verdict(question_type, gt, response, official):
    item = EvalItem(key={"id": 0}, question="q", options=[], answer=gt, meta={"question_type": question_type})
    out = vsibench.score(item, response)
    assert out["score"] == pytest.approx(official, abs=1e-12) and out["correct"] is (official == 1.0)


def test_mra_thresholds_are_the_official_ones():
    # mean_relative_accuracy(start=.5, end=.95, interval=.05): int((.95 - .5) / .05 + 2) == 10 points.
    assert int((0.95 - 0.5) / 0.05 + 2) == 10 and vsibench.THRESHOLDS.tolist() == np.linspace(0.5, 0.95, 10).tolist()


def test_aggregate_merges_direction_levels_then_means_tasks():
    # vsibench_aggregate_results: per-type means; the three rel-direction levels average into one
    # task; overall is the mean over the tasks present (here 2: counting 0.5, direction 2/3).
    types = ["object_counting", "object_counting", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard"]
    items = [EvalItem(key={"id": i}, question="q", options=[], answer="1", meta={"question_type": t}) for i, t in enumerate(types)]
    m = vsibench.aggregate(items, [1.0, 0.0, 1.0, 1.0, 0.0])
    assert m["task/object_rel_direction"] == pytest.approx(2 / 3) and m["overall"] == pytest.approx((0.5 + 2 / 3) / 2)


def _encode_counter_video(path, n: int, gop: int, fmt: str | None = None) -> None:
    """`n` frames of 64x16 at 30 fps, frame i showing its index as four grey 16x16 digit blocks
    (25 grey levels apart: far above MPEG-4's error on flat blocks)."""
    av = pytest.importorskip("av")
    img = np.zeros((16, 64, 3), np.uint8)
    with av.open(str(path), "w", format=fmt) as c:
        stream = c.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 16, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(n):
            for d in range(4):
                img[:, 16 * d: 16 * d + 16] = (i // 10 ** (3 - d)) % 10 * 25 + 5
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)


def _frame_index(image) -> int:
    row = np.asarray(image)[8].astype(int)
    return int("".join(str(int(round((row[16 * d + 8, 0] - 5) / 25))) for d in range(4)))


def test_sample_video_seeks_to_the_sampled_frames(tmp_path):
    n, gop, k = 10_000, 50, 16
    path = tmp_path / "scannet" / "scene0.mp4"
    path.parent.mkdir()
    _encode_counter_video(path, n, gop)
    vsibench.sample_video(path, 2)  # warm up imports and codec tables outside the measurement

    stats: dict[str, int] = {}
    tracemalloc.start()
    t0 = time.perf_counter()
    frames = vsibench.sample_video(path, k, stats)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    wanted = np.linspace(0, n - 1, k).round().astype(int).tolist()  # 0, 667, ..., 9999
    assert [_frame_index(f) for f in frames] == wanted
    assert all(f.mode == "RGB" and f.size == (64, 16) for f in frames)
    # Time: one seek per sampled frame, and each decodes at most a GOP (plus the scene-cut
    # keyframes the encoder adds) instead of all 10,000 frames.
    assert stats["seeks"] == k and stats["decoded"] <= k * gop and seconds < 5
    # Memory: only the sampled frames become PIL images, and Python-side allocations stay small
    # (decoding all 10,000 frames into a list of images peaks at several MB here).
    assert stats["images"] == k and peak < 1_000_000

    # The same through the loader: VideoRef samples from <root>/<dataset>/<scene>.mp4.
    (tmp_path / "test.jsonl").write_text('{"id": 0, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_counting", '
                                         '"question": "q", "options": null, "ground_truth": "2"}\n')
    frames = vsibench.load(tmp_path, num_frames=5)[0].open_images()
    assert [_frame_index(f) for f in frames] == [0, 2500, 5000, 7499, 9999]


def test_sample_video_without_frame_count_or_timestamps(tmp_path):
    # A raw MPEG-4 elementary stream has neither a frame count nor a duration: one sequential pass
    # keeps only the sampled frames. Dense sampling of an MP4 decodes on without re-seeking.
    raw, mp4 = tmp_path / "v.m4v", tmp_path / "v.mp4"
    _encode_counter_video(raw, 120, 12, fmt="m4v")
    _encode_counter_video(mp4, 120, 12)
    stats: dict[str, int] = {}
    frames = vsibench.sample_video(raw, 7, stats)
    assert [_frame_index(f) for f in frames] == [0, 20, 40, 60, 79, 99, 119] and stats["seeks"] == 0 and stats["images"] == 7
    frames = vsibench.sample_video(mp4, 60, stats)
    assert [_frame_index(f) for f in frames] == np.linspace(0, 119, 60).round().astype(int).tolist()
    assert stats["decoded"] <= 120 + 12 and stats["seeks"] < 60


def test_every_task_scored_and_aggregated_as_the_official_rules_do():
    """Hand-written predictions over all ten question types through `score_benchmark`; each task's score and the
    overall worked out by hand from the official rules (first token, exact match or MRA; the three direction levels
    averaged into one task; overall the mean of the eight tasks)."""
    from m2r.eval.runner import score_benchmark

    rows = [  # (question_type, ground truth, response, official row score)
        ("object_counting", "4", "4", 1.0), ("object_counting", "4", "5", 0.6),
        ("object_abs_distance", "2.0", "2.2", 0.9), ("object_abs_distance", "2.0", "2.2m", 0.0),
        ("object_size_estimation", "100", "95", 1.0),
        ("room_size_estimation", "20", "12.5", 0.3),
        ("object_rel_distance", "B", "B.", 1.0), ("object_rel_distance", "B", "(B)", 0.0),
        ("object_rel_direction_easy", "A", "a", 1.0), ("object_rel_direction_medium", "C", "B", 0.0), ("object_rel_direction_hard", "D", "D", 1.0),
        ("route_planning", "A", "A", 1.0), ("route_planning", "A", "B", 0.0),
        ("obj_appearance_order", "C", "C. chair, table", 1.0),
    ]
    items = [EvalItem(key={"id": i}, question="q", options=[] if t in vsibench.NUMERIC else ["A. x", "B. y", "C. z", "D. w"], answer=gt, meta={"question_type": t})
             for i, (t, gt, _, _) in enumerate(rows)]
    samples, m = score_benchmark("vsibench", items, [r for _, _, r, _ in rows])
    assert [s["score"] for s in samples] == pytest.approx([s for *_, s in rows])
    expected = {"object_counting": 0.8, "object_abs_distance": 0.45, "object_size_estimation": 1.0, "room_size_estimation": 0.3,
                "object_rel_distance": 0.5, "object_rel_direction": 2 / 3, "route_planning": 0.5, "obj_appearance_order": 1.0}
    assert {t: m[f"task/{t}"] for t in vsibench.TASKS} == pytest.approx(expected)
    assert m["overall"] == pytest.approx(sum(expected.values()) / 8)
