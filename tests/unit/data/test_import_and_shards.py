"""Shard round trip, rank/worker splitting, the importer, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from m2r.config import DataConfig
from m2r.data.build import build_data
from m2r.data.schema import BadSampleError, Sample, validate_sample
from m2r.data.shards import ShardError, SplitWriter, image_bytes, rank_shards, read_manifest, sample_stream, shard_urls
from m2r.data.tasks import generate


def png(colour=(255, 0, 0), size=32) -> bytes:
    return image_bytes(Image.new("RGB", (size, size), colour))


# ----------------------------------------------------------------------------------------------- shards


def test_shard_round_trip(tmp_path):
    written = [generate(t, i, 0, "train", 168, 0.5) for t in ("spatial/count", "general/chart", "general/word_problem") for i in range(5)]
    w = SplitWriter(tmp_path, "train", samples_per_shard=2)
    for s, imgs in written:
        s.difficulty = 0.1 * (int(s.id[-1]) + 1)
        w.write(s, [image_bytes(im) for im in imgs])
    manifest = w.close()
    assert manifest["count"] == 15 and manifest["tasks"]["spatial/count"]["count"] == 5
    assert [sh["count"] for sh in manifest["tasks"]["general/chart"]["shards"]] == [2, 2, 1]
    assert manifest["tasks"]["general/chart"]["shards"][0]["difficulty"] == pytest.approx([0.1, 0.2])
    assert (tmp_path / "train" / "spatial_count" / "spatial_count-000000.tar").exists()

    read = {s.id: (s, imgs) for s, imgs in sample_stream(shard_urls(tmp_path, "train"), shuffle_shards=False)}
    assert len(read) == 15
    for s, imgs in written:
        r, rimgs = read[s.id]
        assert r.to_dict() == s.to_dict()
        assert [np.asarray(a.convert("RGB")).tolist() == np.asarray(b).tolist() for a, b in zip(imgs, rimgs)] == [True] * len(imgs)


def test_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(ShardError, match="run stage=build first"):
        read_manifest(tmp_path, "train")


def test_ranks_and_workers_get_disjoint_complete_shards(shard_root, monkeypatch):
    urls = shard_urls(shard_root, "train")
    world, workers = 2, 2
    seen: dict[tuple[int, int], list[str]] = {}
    import m2r.data.shards as shards_mod

    for rank in range(world):
        for wid in range(workers):
            monkeypatch.setattr(shards_mod, "_worker", lambda wid=wid: (wid, workers))
            seen[(rank, wid)] = [s.id for s, _ in sample_stream(urls, rank, world, seed=5, shuffle_shards=True)]
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == read_manifest(shard_root, "train")["count"]
    assert rank_shards(list("abcde"), 1, 2) == ["b", "d"]


# ----------------------------------------------------------------------------------------------- schema


def ok_sample(**kw) -> Sample:
    base = dict(id="s1", task="t/x", question="q?", answer="3", answer_type="number", images=["img0.png"], cot="<think>x</think><answer>\\boxed{3}</answer>")
    return Sample(**(base | kw))


@pytest.mark.parametrize(
    "kw, images, field, text",
    [
        ({"id": "a.b"}, [png()], "id", "dot"),
        ({"answer_type": "float"}, [png()], "answer_type", "unknown answer_type"),
        ({"answer": ""}, [png()], "answer", "missing"),
        ({"answer": "E", "answer_type": "choice", "choices": ["x", "y"]}, [png()], "answer", "not one of the letters"),
        ({}, [b"not an image"], "images", "cannot be decoded"),
        ({"answer": "three"}, [png()], "answer", "not a number"),
    ],
)
def test_validation_names_field_and_fix(kw, images, field, text):
    with pytest.raises(BadSampleError, match=text) as e:
        validate_sample(ok_sample(**kw), images, where="file.jsonl line 3")
    assert e.value.field_name == field and "file.jsonl line 3" in str(e.value) and "Fix:" in str(e.value)


# ----------------------------------------------------------------------------------------------- importer


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def good_rows(img_dir: Path) -> list[dict]:
    (img_dir / "a.png").write_bytes(png((0, 255, 0)))
    return [
        {"id": "m2-1", "task": "general/custom", "images": ["a.png"], "question": "What?", "answer": "4", "answer_type": "number", "cot": "<think>2+2</think><answer>\\boxed{4}</answer>"},
        {"id": "llava-1", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhich one?\nA. x\nB. y"}, {"from": "gpt", "value": "<think>it is B</think><answer>\\boxed{B}</answer>"}], "choices": ["x", "y"]},
        {"id": "text-1", "question": "1+1?", "answer": "2", "cot": "<think>1+1=2</think><answer>\\boxed{2}</answer>"},
    ]


def import_cfg(tmp_path, files, **kw) -> DataConfig:
    return DataConfig(source="jsonl", train_files=[str(f) for f in files], samples_per_shard=2, **kw)


def test_import_m2_llava_and_text_rows(tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", good_rows(tmp_path))
    root = build_data(import_cfg(tmp_path, [f]), tmp_path / "out", seed=0)
    got = {s.id: (s, imgs) for s, imgs in sample_stream(shard_urls(root, "train"), shuffle_shards=False)}
    assert set(got) == {"m2-1", "llava-1", "text-1"}
    llava, imgs = got["llava-1"]
    assert llava.answer == "B" and llava.answer_type == "choice" and llava.question.startswith("Which one?") and "<image>" not in llava.question
    assert np.asarray(imgs[0])[0, 0].tolist() == [0, 255, 0]
    assert got["text-1"][0].images == [] and got["text-1"][0].answer_type == "number"


def test_import_parquet_with_image_bytes(tmp_path):
    table = pa.table({"id": ["p1", "p2"], "question": ["q1", "q2"], "answer": ["1", "2"], "images": [[{"bytes": png(), "path": None}], [{"bytes": png((0, 0, 255)), "path": None}]], "cot": ["c", "c"]})
    pq.write_table(table, tmp_path / "d.parquet")
    root = build_data(import_cfg(tmp_path, [tmp_path / "d.parquet"]), tmp_path / "out", seed=0)
    got = {s.id: imgs for s, imgs in sample_stream(shard_urls(root, "train"), shuffle_shards=False)}
    assert np.asarray(got["p2"][0])[0, 0].tolist() == [0, 0, 255]


BAD_ROWS = {
    "malformed": ('{"id": "x1", "question": ', "<row>", "not valid JSON"),
    "missing_image": ({"id": "x2", "images": ["nope.png"], "question": "q", "answer": "1", "cot": "c"}, "images", "does not exist"),
    "undecodable": ({"id": "x3", "images": ["bad.png"], "question": "q", "answer": "1", "cot": "c"}, "images", "cannot be decoded"),
    "unknown_type": ({"id": "x4", "question": "q", "answer": "1", "answer_type": "integer", "cot": "c"}, "answer_type", "unknown answer_type"),
    "missing_answer": ({"id": "x5", "question": "q", "cot": "c"}, "answer", "missing"),
    "dotted_id": ({"id": "x.6", "question": "q", "answer": "1", "cot": "c"}, "id", "dot"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_row_raises_with_file_row_field_and_fix(tmp_path, case):
    row, field, text = BAD_ROWS[case]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    f = write_jsonl(tmp_path / "train.jsonl", [good_rows(tmp_path)[0], row])
    with pytest.raises(BadSampleError) as e:
        build_data(import_cfg(tmp_path, [f]), tmp_path / "out", seed=0)
    msg = str(e.value)
    assert str(f) in msg and "line 2" in msg and e.value.field_name == field and text in msg and "Fix:" in msg


def test_skip_policy_counts_and_records_every_bad_row(tmp_path, caplog):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    rows = good_rows(tmp_path) + [r for r, _, _ in BAD_ROWS.values()]
    f = write_jsonl(tmp_path / "train.jsonl", rows)
    root = build_data(import_cfg(tmp_path, [f], on_bad_sample="skip"), tmp_path / "out", seed=0)
    m = read_manifest(root, "train")
    assert m["count"] == 3 and len(m["skipped"]) == len(BAD_ROWS)
    assert {s["where"].rsplit(" ", 1)[-1] for s in m["skipped"]} == {"4", "5", "6", "7", "8", "9"}
    assert sum("skipping bad sample" in r.message for r in caplog.records) == len(BAD_ROWS)


def test_bad_config_values_are_named(tmp_path):
    with pytest.raises(ValueError, match="data.on_bad_sample"):
        build_data(DataConfig(on_bad_sample="ignore"), tmp_path, seed=0)
    with pytest.raises(ValueError, match="data.tasks has unknown task"):
        build_data(DataConfig(tasks=["spatial/teleport"]), tmp_path, seed=0)
    with pytest.raises(ValueError, match="data.train_files"):
        build_data(DataConfig(source="jsonl"), tmp_path, seed=0)


def test_build_is_skipped_when_up_to_date_and_redone_when_config_changes(tmp_path):
    cfg = DataConfig(tasks=["general/chart"], train_per_task=2, val_per_task=1)
    build_data(cfg, tmp_path, seed=0)
    stamp = (tmp_path / "train" / "manifest.json").stat().st_mtime_ns
    build_data(cfg, tmp_path, seed=0)
    assert (tmp_path / "train" / "manifest.json").stat().st_mtime_ns == stamp
    build_data(DataConfig(tasks=["general/chart"], train_per_task=3, val_per_task=1), tmp_path, seed=0)
    assert read_manifest(tmp_path, "train")["count"] == 3


@pytest.mark.parametrize("answer,kind", [("3", "number"), ("1,234.5", "number"), ("1/2", "expression"), ("x^2+1", "expression"), ("\\frac{1}{2}", "expression"),
                                         ("2\\pi", "expression"), ("-x", "expression"), ("yes", "text"), ("New York", "text"), ("3 apples", "text")])
def test_answer_type_inferred_for_imported_rows(answer, kind):
    """Rows without `answer_type` get the type their answer has, so math answers reach math-verify, not exact match."""
    from m2r.data.importer import infer_answer_type

    assert infer_answer_type(answer, []) == kind and infer_answer_type(answer, ["a", "b"]) == "choice"
