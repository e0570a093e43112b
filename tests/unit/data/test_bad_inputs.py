"""Every class of bad input a user brings (issue 11): a clear error or a counted skip at build time.

`ROW_CASES` are rows written after two good rows in a train file: under `on_bad_sample=raise` the
build stops with a BadSampleError naming the file, the line, the field and a fix; under `skip` the
two good rows are kept and the bad one is counted in the manifest. `FILE_CASES` are files that
cannot be read at all: a BadFileError naming the file and the fix in both modes. `GOOD_CASES` are
inputs that used to fail and now import. The README's table of bad inputs lists the same names.
"""

from __future__ import annotations

import gzip
import io
import json
import multiprocessing
import os
import signal
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from m2r.config import DataConfig
from m2r.data.build import build_data
from m2r.data.importer import BadFileError
from m2r.data.schema import BadSampleError
from m2r.data.shards import read_manifest, sample_stream, shard_urls

COT = "<think>look</think><answer>\\boxed{4}</answer>"


def png(size=(32, 32), colour=(0, 200, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (9, 9, 9)).save(buf, "JPEG")
    return buf.getvalue()


def huge_declared_png() -> bytes:
    """A small PNG whose header claims 12000x12000 pixels."""
    data = bytearray(png())
    ihdr = struct.pack(">II", 12000, 12000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def corrupt_png() -> bytes:
    data = bytearray(png((64, 64)))
    idat = data.index(b"IDAT")
    data[idat + 8 : idat + 40] = b"\x00" * 32  # the compressed pixels, not the header
    return bytes(data)


def good(i: int) -> dict:
    return {"id": f"good-{i}", "task": "general/custom", "images": ["ok.png"], "question": "How many?", "answer": "4", "cot": COT}


def m2(**kw) -> dict:
    return {"id": "bad", "task": "general/custom", "images": ["ok.png"], "question": "How many?", "answer": "4", "cot": COT, **kw}


def llava(human: str, gpt: str, **kw) -> dict:
    return {"id": "bad", "image": "ok.png", "conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}], **kw}


# name -> (row (dict, or raw bytes for a line), field, words the error must hold)
ROW_CASES = {
    "non_utf8_byte": (b'{"id": "bad", "question": "caf\xe9", "answer": "4"}', "<row>", "not UTF-8"),
    "images_is_a_number": (m2(images=5), "images", "not a path"),
    "conversations_is_a_string": ({"id": "bad", "image": "ok.png", "conversations": "hello"}, "conversations", "not a list of turns"),
    "image_is_a_folder": (m2(images=["imgdir"]), "images", "is a folder"),
    "task_with_nul": (m2(task="general/cu\x00stom"), "task", "not a task name"),
    "task_300_chars": (m2(task="t" * 300), "task", "not a task name"),
    "truncated_jpeg": (m2(images=["trunc.jpg"]), "images", "cannot be decoded"),
    "corrupt_png_data": (m2(images=["corrupt.png"]), "images", "cannot be decoded"),
    "png_declaring_12000x12000": (m2(images=["huge.png"]), "images", "pixels"),
    "tiny_image": (m2(images=["tiny.png"]), "images", "cannot be processed"),
    "train_row_without_cot": (m2(cot=None), "cot", "SFT trains on"),
    "27_choices": (m2(choices=[str(i) for i in range(27)], answer="A"), "choices", "at most 26"),
    "1mb_question": (m2(question="why " * 250_000), "question", "characters long"),
    "question_is_a_list": (m2(question=["a", "b"]), "question", "not text"),
    "question_is_a_dict": (m2(question={"text": "q"}), "question", "not text"),
    "answer_is_a_list": (m2(answer=[4]), "answer", "not text"),
    "answer_is_a_dict": (m2(answer={"value": 4}), "answer", "not text"),
    "cot_is_a_list": (m2(cot=["think", "answer"]), "cot", "not text"),
    "choices_is_a_string": (m2(choices="ABCD", answer="A"), "choices", "not a list"),
    "answer_nan": (b'{"id": "bad", "question": "q", "answer": NaN, "cot": "c"}', "answer", "not a finite number"),
    "answer_nan_text": (m2(answer="NaN"), "answer", "not a finite number"),
    "answer_1e999": (m2(answer="1e999"), "answer", "not a finite number"),
    "difficulty_hard": (m2(difficulty="hard"), "difficulty", "not a number in [0, 1]"),
    "more_image_tokens_than_images": (llava("<image>\n<image>\nSame?", "yes"), "images", "2 <image> token(s) but the row has 1"),
    "image_tokens_without_image": ({"id": "bad", "conversations": [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "a cat"}]}, "images", "1 <image> token(s) but the row has 0"),
    "multi_turn_conversation": ({"id": "bad", "image": "ok.png", "conversations": [{"from": "human", "value": "<image>a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]}, "conversations", "one row per question"),
    "id_is_a_list": (m2(id=["a"]), "id", "not a string"),
    "answer_unbalanced_box": (m2(answer="\\boxed{\\frac{1}{2}"), "answer", "balanced"),
    "assistant_answer_too_long": (llava("<image>Describe.", "word " * 300), "answer", "characters long"),
}


def fixture_dir(tmp_path: Path) -> Path:
    (tmp_path / "ok.png").write_bytes(png())
    (tmp_path / "imgdir").mkdir(exist_ok=True)
    (tmp_path / "trunc.jpg").write_bytes(jpeg()[:400])
    (tmp_path / "corrupt.png").write_bytes(corrupt_png())
    (tmp_path / "huge.png").write_bytes(huge_declared_png())
    (tmp_path / "tiny.png").write_bytes(png((10, 10)))
    return tmp_path


def write_lines(path: Path, rows: list) -> Path:
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n")
    return path


def cfg(files, policy: str, **kw) -> DataConfig:
    return DataConfig(**{"source": "jsonl", "train_files": [str(f) for f in files], "samples_per_shard": 4, "on_bad_sample": policy, **kw})


@pytest.mark.parametrize("name", list(ROW_CASES))
def test_bad_row_is_a_clear_error(tmp_path, name):
    row, field, words = ROW_CASES[name]
    f = write_lines(fixture_dir(tmp_path) / "train.jsonl", [good(0), good(1), row])
    with pytest.raises(BadSampleError) as e:
        build_data(cfg([f], "raise"), tmp_path / "out", seed=0)
    msg = str(e.value)
    assert e.value.field_name == field, msg
    assert str(f) in msg and " line 3" in msg and words in msg and "Fix:" in msg, msg
    assert not (tmp_path / "out" / "train").exists() and not (tmp_path / "out" / ".train.partial").exists()


@pytest.mark.parametrize("name", list(ROW_CASES))
def test_bad_row_is_a_counted_skip(tmp_path, name):
    row, _, words = ROW_CASES[name]
    f = write_lines(fixture_dir(tmp_path) / "train.jsonl", [good(0), good(1), row])
    root = build_data(cfg([f], "skip"), tmp_path / "out", seed=0)
    m = read_manifest(root, "train")
    assert m["count"] == 2 and len(m["skipped"]) == 1 and m["skipped"][0]["where"].endswith("line 3") and words in m["skipped"][0]["reason"]
    got = [s.id for s, _ in sample_stream(shard_urls(root, "train"), shuffle_shards=False)]
    assert sorted(got) == ["good-0", "good-1"]


def _parquet_corrupt(d: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["p"], "question": ["q"], "answer": ["1"], "cot": ["c"]}), d / "x.parquet")
    raw = (d / "x.parquet").read_bytes()
    (d / "x.parquet").write_bytes(raw[:20] + b"\x00" * 40 + raw[60:])
    return d / "x.parquet"


def _utf16_no_bom(d: Path) -> Path:
    (d / "u.jsonl").write_bytes(json.dumps(good(0)).encode("utf-16-le"))
    return d / "u.jsonl"


def _empty(d: Path) -> Path:
    (d / "e.jsonl").write_text("\n\n")
    return d / "e.jsonl"


def _folder_without_data(d: Path) -> Path:
    (d / "nodata").mkdir()
    (d / "nodata" / "notes.txt").write_text("x")
    return d / "nodata"


def _missing(d: Path) -> Path:
    return d / "nope.jsonl"


def _bad_gzip(d: Path) -> Path:
    (d / "g.jsonl.gz").write_bytes(gzip.compress(json.dumps(good(0)).encode())[:-12])
    return d / "g.jsonl.gz"


FILE_CASES = {  # name -> (make the file, words); the file is given as data.val_files next to a good train file
    "corrupt_parquet": (_parquet_corrupt, "not a readable parquet file"),
    "utf16_without_bom": (_utf16_no_bom, "NUL bytes"),
    "empty_val_file": (_empty, "is empty"),
    "folder_without_data_files": (_folder_without_data, "folder with no"),
    "missing_file": (_missing, "does not exist"),
    "truncated_gzip": (_bad_gzip, "cannot be decompressed"),
}


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize("name", list(FILE_CASES))
def test_unreadable_file_is_a_clear_error_in_both_modes(tmp_path, name, policy):
    make, words = FILE_CASES[name]
    train = write_lines(fixture_dir(tmp_path) / "train.jsonl", [good(0)])
    bad = make(tmp_path)
    with pytest.raises(BadFileError) as e:
        build_data(DataConfig(source="jsonl", train_files=[str(train)], val_files=[str(bad)], on_bad_sample=policy), tmp_path / "out", seed=0)
    assert str(bad) in str(e.value) and words in str(e.value) and "Fix:" in str(e.value)


def test_every_readable_encoding_and_container_imports(tmp_path):
    d = fixture_dir(tmp_path)
    rows = [good(i) for i in range(3)]
    lines = "\n".join(json.dumps(r) for r in rows)
    (d / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (d / "b.jsonl").write_bytes(b"\xff\xfe" + "\n".join(json.dumps(dict(r, id=f"u16-{i}")) for i, r in enumerate(rows)).encode("utf-16-le"))
    (d / "c.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(dict(r, id=f"bom-{i}")) for i, r in enumerate(rows)).encode())
    (d / "llava.json").write_text(json.dumps([llava("<image>\nWhat shape?", "rectangle", id=f"arr-{i}") for i in range(2)]))
    (d / "sub").mkdir()
    write_lines(d / "sub" / "more.jsonl", [dict(good(0), id="sub-0")])
    root = build_data(cfg([d / "a.jsonl.gz", d / "b.jsonl", d / "c.jsonl", d / "llava.json", d / "sub"], "raise", image_root=str(d)), tmp_path / "out", seed=0)
    assert read_manifest(root, "train")["count"] == 12


def test_plain_llava_rows_import_as_they_are(tmp_path):
    d = fixture_dir(tmp_path)
    rows = [
        llava("<image>\nWhat shape is it?", "rectangle", id="bare"),
        llava("<image>\nHow many?", "There are three.", id="sentence", answer="3"),
        llava("<image>\nHalf of one?", "<think>one over two</think><answer>\\boxed{\\frac{1}{2}}</answer>", id="nested"),
        {"id": "msgs", "images": ["ok.png"], "messages": [{"role": "user", "content": "<image>Is it green?"}, {"role": "assistant", "content": "Yes"}]},
    ]
    root = build_data(cfg([write_lines(d / "t.jsonl", rows)], "raise"), tmp_path / "out", seed=0)
    got = {s.id: s for s, _ in sample_stream(shard_urls(root, "train"), shuffle_shards=False)}
    assert (got["bare"].answer, got["bare"].answer_type) == ("rectangle", "text")
    assert got["bare"].cot == "<think>\nrectangle\n</think>\n<answer>\n\\boxed{rectangle}\n</answer>"
    assert (got["sentence"].answer, got["sentence"].answer_type) == ("3", "number")
    assert got["nested"].answer == "\\frac{1}{2}" and got["nested"].cot.startswith("<think>one over two</think>")
    assert (got["msgs"].answer, got["msgs"].question) == ("Yes", "Is it green?")
    keep = build_data(cfg([d / "t.jsonl"], "raise", llava_target="keep"), tmp_path / "keep", seed=0)
    assert {s.id: s.cot for s, _ in sample_stream(shard_urls(keep, "train"), shuffle_shards=False)}["bare"] == "rectangle"


def test_fixed_row_or_image_rebuilds_and_a_killed_build_is_redone(tmp_path):
    d = fixture_dir(tmp_path)
    f = write_lines(d / "t.jsonl", [good(0), m2(answer="NaN")])
    root = build_data(cfg([f], "skip"), tmp_path / "out", seed=0)
    assert read_manifest(root, "train")["count"] == 1
    write_lines(f, [good(0), m2(answer="5")])  # the row fixed: same file name, new content
    assert read_manifest(build_data(cfg([f], "skip"), tmp_path / "out", seed=0), "train")["count"] == 2
    stamp = (root / "train" / "manifest.json").stat().st_mtime_ns
    build_data(cfg([f], "skip"), tmp_path / "out", seed=0)
    assert (root / "train" / "manifest.json").stat().st_mtime_ns == stamp  # unchanged: not rebuilt
    (d / "ok.png").write_bytes(png(colour=(200, 0, 0)))  # an image fixed
    build_data(cfg([f], "skip"), tmp_path / "out", seed=0)
    assert (root / "train" / "manifest.json").stat().st_mtime_ns != stamp

    # A build under another config SIGKILLed mid-write (after the train split, in the val split):
    # the earlier config's re-run must not take what is on disk for its own complete build.
    v = write_lines(d / "v.jsonl", [dict(good(i), id=f"val-{i}") for i in range(3)])
    build_data(cfg([f], "skip", val_files=[str(v)]), tmp_path / "out", seed=0)
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=_build_and_die_in_val, args=(cfg([f], "skip", val_files=[str(v)], samples_per_shard=1), tmp_path / "out"))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert (root / ".val.partial").exists()  # the torn split lies beside the intact one, never in its place
    assert read_manifest(root, "val")["build_key"] != read_manifest(root, "train")["build_key"]  # train is the new config's
    stamp = (root / "train" / "manifest.json").stat().st_mtime_ns
    build_data(cfg([f], "skip", val_files=[str(v)]), tmp_path / "out", seed=0)
    assert (root / "train" / "manifest.json").stat().st_mtime_ns != stamp  # redone
    assert not (root / ".val.partial").exists() and read_manifest(root, "val")["count"] == 3


def _build_and_die_in_val(data_cfg, out) -> None:
    import m2r.data.build as build

    real = build.row_to_sample

    def dying(row, where, split, c):
        if split == "val" and row["id"] == "val-2":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(row, where, split, c)

    build.row_to_sample = dying
    build_data(data_cfg, out, seed=0)
