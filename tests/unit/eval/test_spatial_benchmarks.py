"""CV-Bench and VSI-Bench on small files built in their native schemas (field names and types as
the benchmarks publish them), with scores computed by hand."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from m2r.eval import cvbench, vsibench
from m2r.eval.runner import score_benchmark, table


def png(c) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), c).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def cv_root(tmp_path):
    # 8 rows: ADE20K 2 (Count, Relation), COCO 2 (Count, Relation), Omni3D 4 (Depth x2, Distance x2).
    spec = [("ADE20K", "2D", "Count"), ("ADE20K", "2D", "Relation"), ("COCO", "2D", "Count"), ("COCO", "2D", "Relation"),
            ("Omni3D", "3D", "Depth"), ("Omni3D", "3D", "Depth"), ("Omni3D", "3D", "Distance"), ("Omni3D", "3D", "Distance")]
    rows = {k: [] for k in ("idx", "type", "task", "image", "question", "choices", "answer", "prompt", "filename", "source")}
    for i, (src, typ, task) in enumerate(spec):
        for k, v in {"idx": i, "type": typ, "task": task, "image": {"bytes": png((i * 20, 0, 0)), "path": f"img/{i}.png"}, "question": f"q{i}?",
                     "choices": ["1", "2", "3"], "answer": "(B)", "prompt": f"q{i}? Select from the following choices.\n(A) 1 (B) 2 (C) 3", "filename": f"img/{i}.png",
                     "source": src}.items():
            rows[k].append(v)
    pq.write_table(pa.table(rows), tmp_path / "test.parquet")
    return tmp_path


def test_cvbench_loader_and_official_overall(cv_root):
    items = cvbench.load(cv_root)
    assert len(items) == 8 and items[0].answer == "B" and items[0].open_images()[0].getpixel((0, 0)) == (0, 0, 0)
    assert cvbench.prompt(items[0]).startswith("q0?")
    # Right on: ADE20K 2/2, COCO 1/2, Omni3D 1/4 (one Depth).
    right = {0, 1, 2, 4}
    responses = ["(B)" if i in right else "A" for i in range(8)]
    _, m = score_benchmark("cvbench", items, responses)
    assert m["source/ADE20K"] == 1.0 and m["source/COCO"] == 0.5 and m["source/Omni3D"] == 0.25
    assert m["overall"] == pytest.approx(((1.0 + 0.5) / 2 + 0.25) / 2)  # 0.5
    assert (m["task/Count"], m["task/Relation"], m["task/Depth"], m["task/Distance"]) == (1.0, 0.5, 0.5, 0.0)
    assert m["task_mean"] == pytest.approx(0.5)
    md = table("cvbench", "tiny", m)
    assert "| M2-Reasoning-7B (paper) | 66.6 | 92.8 | 89.3 | 84.3 | 82.3 | - |" in md and "| **tiny** | 100.0 | 50.0 | 50.0 | 0.0 | 50.0 | 50.0 |" in md


def test_cvbench_letter_extraction():
    from m2r.eval.items import EvalItem

    it = EvalItem(key={"idx": 0}, question="q", options=["a", "b"], answer="B")
    # Cambrian's extract_mcq_answer keeps the first character: "Both" reads as "b" (right).
    for r in ["(B)", "B", "B.", "<think>x</think><answer>\\boxed{B}</answer>", "(B) 2", "Both"]:
        assert cvbench.score(it, r)["correct"], r
    for r in ["", "A", "Option B", "\\boxed{A}"]:
        assert not cvbench.score(it, r)["correct"], r


def test_vsibench_mra_edge_values():
    assert vsibench.mra(1.1, 1.0) == pytest.approx(0.9)
    assert vsibench.mra(1.5, 1.0) == pytest.approx(0.1)
    assert vsibench.mra(2.0, 1.0) == 0.0
    assert vsibench.mra(1.0, 1.0) == 1.0 and vsibench.mra(0.5, 1.0) == pytest.approx(0.1)
    assert vsibench.THRESHOLDS.tolist() == np.linspace(0.5, 0.95, 10).tolist()


@pytest.fixture
def vsi_root(tmp_path):
    rows = [
        {"id": 0, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_counting", "question": "How many chairs?", "options": None, "ground_truth": "4"},
        {"id": 1, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_abs_distance", "question": "Distance?", "options": None, "ground_truth": "2.0"},
        {"id": 2, "dataset": "arkitscenes", "scene_name": "sceneA", "question_type": "object_size_estimation", "question": "Size?", "options": None, "ground_truth": "100"},
        {"id": 3, "dataset": "arkitscenes", "scene_name": "sceneA", "question_type": "room_size_estimation", "question": "Room?", "options": None, "ground_truth": "20"},
        {"id": 4, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_rel_distance", "question": "Closest?", "options": ["A. sofa", "B. bed"], "ground_truth": "A"},
        {"id": 5, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_rel_direction_easy", "question": "Dir?", "options": ["A. left", "B. right"], "ground_truth": "B"},
        {"id": 6, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_rel_direction_medium", "question": "Dir?", "options": ["A. left", "B. right"], "ground_truth": "A"},
        {"id": 7, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_rel_direction_hard", "question": "Dir?", "options": ["A. left", "B. right"], "ground_truth": "A"},
        {"id": 8, "dataset": "scannet", "scene_name": "scene0", "question_type": "route_planning", "question": "Route?", "options": ["A. x", "B. y"], "ground_truth": "B"},
        {"id": 9, "dataset": "scannet", "scene_name": "scene0", "question_type": "obj_appearance_order", "question": "Order?", "options": ["A. x", "B. y"], "ground_truth": "A"},
    ]
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    for ds, scene in (("scannet", "scene0"), ("arkitscenes", "sceneA")):
        d = tmp_path / "frames" / ds / scene
        d.mkdir(parents=True)
        for k in range(20):
            Image.new("RGB", (16, 16), (k * 10, 0, 0)).save(d / f"{k:05d}.jpg")
    return tmp_path


def test_vsibench_loader_frames_and_scores_by_hand(vsi_root):
    items = vsibench.load(vsi_root, num_frames=5, frames_dir=vsi_root / "frames")
    frames = items[0].open_images()
    assert len(frames) == 5  # uniform: frames 0, 5, 10, 14, 19 of 20
    assert "single word" in vsibench.prompt(items[0]) and "A. sofa" in vsibench.prompt(items[4])
    responses = ["4", "2.2", "150", "\\boxed{20}", "A.", "B", "B", "A", "A", "A"]
    samples, m = score_benchmark("vsibench", items, responses)
    # counting 1.0; distance 2.2 vs 2.0: rel 0.1 -> 0.9; size 150 vs 100: rel 0.5 -> 0.1; room 1.0;
    # rel_distance 1; rel_direction levels (1, 0, 1) -> 2/3; route 0; order 1.
    assert [s["score"] for s in samples] == pytest.approx([1.0, 0.9, 0.1, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert m["task/object_rel_direction"] == pytest.approx(2 / 3)
    assert m["overall"] == pytest.approx((1.0 + 0.9 + 0.1 + 1.0 + 1.0 + 2 / 3 + 0.0 + 1.0) / 8)
    md = table("vsibench", "tiny", m)
    assert "| M2-Reasoning-7B (paper) | 41.0 | 34.0 | 60.9 | 55.4 | 40.7 | 47.3 | 29.9 | 28.8 | 42.3 |" in md


def test_vsibench_video_needs_av_or_frames(vsi_root):
    items = vsibench.load(vsi_root)
    with pytest.raises((ImportError, FileNotFoundError, OSError)):
        items[0].open_images()  # no such video, and a clear message about PyAV / frames_dir when av is missing


def test_mathvista_native_parquet_and_official_normalisation(tmp_path):
    from m2r.eval import mathvista

    rows = [
        {"pid": "1", "question": "Which is larger?", "image": "images/1.jpg", "decoded_image": {"bytes": png((1, 2, 3)), "path": "images/1.jpg"},
         "choices": ["2.1", "3.5", "4.0"], "unit": None, "precision": None, "answer": "3.5", "question_type": "multi_choice", "answer_type": "text",
         "query": "Hint: ... Question: Which is larger?", "metadata": {"task": "figure question answering", "category": "math-targeted-vqa"}},
        {"pid": "2", "question": "How many?", "image": "images/2.jpg", "decoded_image": {"bytes": png((4, 5, 6)), "path": "images/2.jpg"},
         "choices": None, "unit": None, "precision": None, "answer": "7", "question_type": "free_form", "answer_type": "integer",
         "query": "Q2", "metadata": {"task": "math word problem", "category": "math-targeted-vqa"}},
        {"pid": "3", "question": "Slope?", "image": "images/3.jpg", "decoded_image": {"bytes": png((7, 8, 9)), "path": "images/3.jpg"},
         "choices": None, "unit": None, "precision": 2.0, "answer": "1.46", "question_type": "free_form", "answer_type": "float",
         "query": "Q3", "metadata": {"task": "figure question answering", "category": "general-vqa"}},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testmini-00000.parquet")
    items = mathvista.load(tmp_path)
    assert [it.key["pid"] for it in items] == ["1", "2", "3"] and mathvista.prompt(items[0]).startswith("Hint")
    R = lambda a: f"<think>t</think><answer>\\boxed{{{a}}}</answer>"  # noqa: E731
    assert mathvista.score(items[0], R("B"))["correct"] and mathvista.score(items[0], R("(B) 3.5"))["correct"]
    assert mathvista.score(items[0], R("3.4"))["extracted"] == "3.5"  # nearest option by edit distance, as the official code
    assert mathvista.score(items[1], R("7.0"))["correct"] and not mathvista.score(items[1], R("8"))["correct"]
    assert mathvista.score(items[2], R("1.4567"))["correct"] and not mathvista.score(items[2], R("1.47"))["correct"]
    assert mathvista.edit_distance("kitten", "sitting") == 3
    _, m = score_benchmark("mathvista", items, [R("B"), R("8"), R("1.456")])
    assert m["score"] == pytest.approx(2 / 3) and "GPT-4" in table("mathvista", "x", m)


def test_dynamath_variants_average_and_worst_case(tmp_path):
    from m2r.eval import dynamath

    for v in (1, 2, 3):
        rows = [{"id": "1", "question": "Area?", "image": "image/1.png", "decoded_image": {"bytes": png((v, 0, 0)), "path": None}, "ground_truth": str(1.5 * v),
                 "answer_type": "float", "subject": "PG", "knowledge_level": "high school"},
                {"id": "2", "question": "Which?", "image": "image/2.png", "decoded_image": {"bytes": png((0, v, 0)), "path": None}, "ground_truth": "B",
                 "answer_type": "multiple choice", "subject": "SG", "knowledge_level": "elementary"}]
        # Both names the Hugging Face repo has used for a variant's file: sample_variant<k>-* and sample<k>-*.
        name = f"sample_variant{v}-00000-of-00001.parquet" if v < 3 else f"sample{v}-00000-of-00001.parquet"
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / name)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sample_all-00000-of-00001.parquet")  # every variant again: skipped
    items = dynamath.load(tmp_path)
    assert len(items) == 6 and {it.key["variant"] for it in items} == {1, 2, 3}
    assert "short answer" in dynamath.prompt(items[0]) and "floating-point" in dynamath.prompt(items[0])
    by = {(it.key["id"], it.key["variant"]): it for it in items}
    responses = {
        ("1", 1): '{"solution": "...", "short answer": "1.5004"}',  # within 0.001
        ("1", 2): '{"solution": "...", "short answer": "3.0"}',
        ("1", 3): '{"solution": "...", "short answer": "4.6"}',     # 4.5 expected: wrong
        ("2", 1): '{"short answer": "B"}', ("2", 2): '{"short answer": "(B) 12"}', ("2", 3): "<answer>\\boxed{B}</answer>",
    }
    _, m = score_benchmark("dynamath", items, [responses[(it.key["id"], it.key["variant"])] for it in items])
    assert m["average"] == pytest.approx(5 / 6) and m["worst_case"] == pytest.approx(1 / 2)  # seed 1 fails variant 3
    pi_item = by[("1", 1)]
    pi_item.answer = str(2 * 3.141592653589793)
    assert dynamath.score(pi_item, '{"short answer": "2π"}')["correct"]
    assert "| M2-Reasoning-7B (paper) | 26.8 | - |" in table("dynamath", "x", m)


def test_logicvista_sets_of_options(tmp_path):
    from m2r.eval import logicvista

    (tmp_path / "images").mkdir()
    data = {"v1_0": {"imagename": "v1_0.png", "question": "Which?", "answer": "C", "skill": ["inductive"], "capability": ["diagram"]},
            "v1_1": {"imagename": "v1_1.png", "question": "Which ones?", "answer": "A, C", "skill": ["inductive"], "capability": ["diagram"]},
            "v1_20": {"imagename": "v1_20.png", "question": "Select from 1-5", "answer": "3", "skill": ["deductive"], "capability": ["ocr"]}}
    for k in data:
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / f"{k}.png")
    (tmp_path / "dataset.json").write_text(json.dumps(data))
    items = logicvista.load(tmp_path)
    R = lambda a: f"<answer>\\boxed{{{a}}}</answer>"  # noqa: E731
    by = {it.key["id"]: it for it in items}
    assert logicvista.score(by["v1_1"], R("C, A"))["correct"] and logicvista.score(by["v1_1"], R("A and C"))["correct"]
    assert not logicvista.score(by["v1_1"], R("A"))["correct"] and not logicvista.score(by["v1_0"], R("A, C"))["correct"]
    assert logicvista.score(by["v1_20"], R("3"))["correct"] and not logicvista.score(by["v1_20"], "")["correct"]
    _, m = score_benchmark("logicvista", items, [R("C"), R("A"), R("3")])
    assert m["score"] == pytest.approx(2 / 3) and m["skill/inductive"] == pytest.approx(0.5) and m["skill/deductive"] == 1.0


def test_mathverse_vision_only_and_scoring(tmp_path):
    from m2r.eval import mathverse

    rows = []
    for i, (version, qt, ans) in enumerate([("Vision Only", "multi-choice", "B"), ("Vision Only", "free-form", "\\frac{3}{2}"), ("Text Dominant", "free-form", "5"),
                                            ("Vision Only", "free-form", "12")]):
        rows.append({"sample_index": str(i), "problem_index": "1", "problem_version": version, "question": "q", "image": {"bytes": png((i, 0, 0)), "path": f"{i}.png"},
                     "answer": ans, "question_type": qt, "query_cot": f"cot {i}", "query_wo": f"wo {i}", "metadata": {"subject": "plane geometry"}})
    rows[0]["question"] = ""  # Vision Only: the question is in the image; the M2 prompt gets the instruction (query_wo)
    rows[0]["question_for_eval"] = "Which?\nChoices:\nA:1\nB:2"
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "testmini-00000.parquet")
    items = mathverse.load(tmp_path)
    assert [it.key["sample_index"] for it in items] == ["0", "1", "3"] and mathverse.prompt(items[0]) == "cot 0"
    assert items[0].question == "wo 0" and items[1].question == "q"
    assert mathverse.score(items[0], "<answer>\\boxed{2}</answer>")["correct"]  # option B's text, read from question_for_eval
    R = lambda a: f"<think>t</think><answer>\\boxed{{{a}}}</answer>"  # noqa: E731
    assert mathverse.score(items[0], R("B"))["correct"] and not mathverse.score(items[0], R("C"))["correct"]
    assert mathverse.score(items[1], R("1.5"))["correct"] and mathverse.score(items[2], R("12 cm"))["correct"]
    assert not mathverse.score(items[2], R("13"))["correct"]


def test_vlmevalkit_tsv_rows(tmp_path):
    import base64
    import csv

    from m2r.eval import mathvision, tsv

    path = tmp_path / "MathVision_MINI.tsv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["index", "image", "question", "A", "B", "C", "answer", "category", "level"])
        w.writerow(["0", base64.b64encode(png((9, 9, 9))).decode(), "Which?", "3", "4", "5", "B", "counting", "1"])
        w.writerow(["1", json.dumps([base64.b64encode(png((1, 1, 1))).decode(), base64.b64encode(png((2, 2, 2))).decode()]), "How many?", "", "", "", "12", "arithmetic", "2"])
    items = tsv.load(tmp_path)
    assert [it.key for it in items] == [{"index": "0"}, {"index": "1"}]
    assert items[0].options == ["3", "4", "5"] and items[1].options == [] and len(items[1].open_images()) == 2
    assert items[0].open_images()[0].getpixel((0, 0)) == (9, 9, 9) and items[0].meta["subject"] == "counting"
    R = lambda a: f"<answer>\\boxed{{{a}}}</answer>"  # noqa: E731
    assert mathvision.score(items[0], R("B"))["correct"] and mathvision.score(items[0], R("4"))["correct"] and mathvision.score(items[1], R("12"))["correct"]
    bad = tmp_path / "bad" / "x.tsv"
    bad.parent.mkdir()
    bad.write_text("index\tquestion\tanswer\timage\n0\tq\tA\tnot base64!\n")
    with pytest.raises(ValueError, match="line 2: column 'image' is not base64"):
        tsv.load(bad)
