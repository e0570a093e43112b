"""Importing videos: a video file, a folder of frames and a list of frames become frame members with their rate; the
shards decode them into `Video`s; bad video rows name the field and the fix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from m2r.config import DataConfig
from m2r.data.build import build_data
from m2r.data.media import Video
from m2r.data.schema import BadSampleError, Sample, validate_sample
from m2r.data.shards import decode, sample_stream, shard_urls

av = pytest.importorskip("av")


def _mp4(path, n=20, rate=10, size=64):
    """A video whose frame i is a flat grey of level 10 * i (readable back to about +-3 after mpeg4)."""
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(n):
            for p in stream.encode(av.VideoFrame.from_ndarray(np.full((size, size, 3), 10 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    return path


def _frames_dir(path, n=12, size=40):
    path.mkdir()
    for i in range(n):
        Image.new("RGB", (size, size), (20 * i, 0, 0)).save(path / f"f{i:04d}.png")
    return path


def _cfg(tmp_path, rows, **kw):
    f = tmp_path / "data.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    return DataConfig(source="jsonl", train_files=[str(f)], samples_per_shard=4, **kw)


def _row(i, **kw):
    return {"id": f"r{i}", "task": "spatial/video/imported", "question": "<video>How many chairs?", "answer": "3",
            "cot": "<think>\nI count.\n</think>\n<answer>\n\\boxed{3}\n</answer>", **kw}


def _samples(root):
    return list(sample_stream(shard_urls(root, "train"), shuffle_shards=False))


def test_video_file_frames_folder_and_frame_list(tmp_path):
    _mp4(tmp_path / "clip.mp4")  # 20 frames at 10 fps: 2 s
    _frames_dir(tmp_path / "scan")  # 12 frames at 3 fps (given)
    rows = [
        _row(0, video="clip.mp4"),
        _row(1, video={"path": "scan", "fps": 3}),
        _row(2, video={"frames": [f"scan/f{i:04d}.png" for i in (0, 2, 5, 11)], "timestamps": [0.0, 1.0, 2.5, 5.5]}),
        _row(3, question="<image> and <video>: how many?", images=["scan/f0001.png"], video={"path": "scan", "fps": 3}),
    ]
    root = build_data(_cfg(tmp_path, rows, num_frames=4), tmp_path / "out", seed=0)
    got = {s.id: (s, m) for s, m in _samples(root)}
    s0, m0 = got["r0"]
    assert isinstance(m0[0], Video) and len(m0[0]) == 4
    # frames 0, 6, 13, 19 of 20 (uniform), at 10 fps: timestamps 0, 0.6, 1.3, 1.9; rate 3 / 1.9 s
    # qwen-vl-utils' rate: k frames sampled uniformly from n at r fps are given k * r / n = 4 * 10 / 20
    assert s0.videos[0]["timestamps"] == pytest.approx([0.0, 0.6, 1.3, 1.9]) and m0[0].fps == pytest.approx(2.0)
    assert [round(np.asarray(f).mean() / 10) for f in m0[0].frames] == [0, 6, 13, 19]  # the right frames, in order
    s1, m1 = got["r1"]
    assert s1.videos[0]["timestamps"] == pytest.approx([0.0, 4 / 3, 7 / 3, 11 / 3])  # frames 0, 4, 7, 11 of 12 at 3 fps
    assert [f.getpixel((0, 0))[0] for f in m1[0].frames] == [0, 80, 140, 220] and m1[0].fps == pytest.approx(4 * 3 / 12)
    s2, m2 = got["r2"]  # a list of frames with their times: all four kept (num_frames = 4)
    assert m2[0].timestamps == [0.0, 1.0, 2.5, 5.5] and m2[0].fps == pytest.approx(3 / 5.5)
    s3, m3 = got["r3"]  # an image and a video: the image first, then the video
    assert isinstance(m3[0], Image.Image) and isinstance(m3[1], Video) and s3.question == "and : how many?"


def test_video_fps_samples_the_length_times_the_rate(tmp_path):
    _mp4(tmp_path / "clip.mp4")  # 2 s
    root = build_data(_cfg(tmp_path, [_row(0, video="clip.mp4")], num_frames=16, video_fps=2.0), tmp_path / "out", seed=0)
    (s, m), = _samples(root)
    assert len(m[0]) == 4  # 2 s x 2 fps, under num_frames = 16


@pytest.mark.parametrize("video, text", [
    ({"path": "scan"}, "without fps or timestamps.*Fix: give the rate the frames were taken at"),
    ({"path": "scan", "fps": -1}, "has fps -1"),
    ("nowhere.mp4", "does not exist"),
    ("notes.txt", "neither a video file"),
    ({"frames": ["scan/f0000.png", "scan/f0001.png"], "timestamps": [1.0, 0.5]}, "must increase"),
    ({"frames": ["scan/f0000.png"], "timestamps": [0.0, 1.0]}, "1 frames but timestamps"),
    ({"path": "clip.mp4", "fps": 2}, "fps/timestamps given for the video file"),
])
def test_bad_video_rows_name_the_field_and_fix(tmp_path, video, text):
    _frames_dir(tmp_path / "scan")
    _mp4(tmp_path / "clip.mp4", n=4)
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(BadSampleError, match=rf"field 'videos'.*{text}"):
        build_data(_cfg(tmp_path, [_row(0, video=video)]), tmp_path / "out", seed=0)


def test_video_token_count_must_match(tmp_path):
    _frames_dir(tmp_path / "scan")
    row = _row(0, question="<video> then <video>?", video={"path": "scan", "fps": 1})
    with pytest.raises(BadSampleError, match="2 <video> token.*1 video"):
        build_data(_cfg(tmp_path, [row]), tmp_path / "out", seed=0)


def test_schema_checks_video_entries():
    png = Image.new("RGB", (32, 32))
    import io

    buf = io.BytesIO()
    png.save(buf, format="PNG")
    data = buf.getvalue()
    ok = Sample(id="a", task="t", question="q", answer="1", answer_type="number", videos=[{"frames": ["vid0_f000.png", "vid0_f001.png"], "fps": 1.0}])
    validate_sample(ok, [data, data], "here")
    with pytest.raises(BadSampleError, match="1 video frame|2 video frame"):
        validate_sample(ok, [data], "here")
    no_rate = Sample(id="a", task="t", question="q", answer="1", answer_type="number", videos=[{"frames": ["vid0_f000.png"]}])
    with pytest.raises(BadSampleError, match="fps None and no timestamps"):
        validate_sample(no_rate, [data], "here")
    # decode: the frames in order, as a Video with the stored rate
    record = {"json": json.dumps(ok.to_dict()).encode(), "vid0_f000.png": data, "vid0_f001.png": data}
    _, media = decode(record)
    assert len(media) == 1 and isinstance(media[0], Video) and len(media[0]) == 2 and media[0].fps == 1.0


def test_frames_named_by_unpadded_numbers_keep_their_time_order(tmp_path):
    """ffmpeg's `%d` names (1.png ... 12.png): a plain sort would give 1, 10, 11, 12, 2, ..."""
    (tmp_path / "scan").mkdir()
    for i in range(1, 13):
        Image.new("RGB", (40, 40), (20 * i, 0, 0)).save(tmp_path / "scan" / f"{i}.png")
    root = build_data(_cfg(tmp_path, [_row(0, video={"path": "scan", "fps": 1})], num_frames=12), tmp_path / "out", seed=0)
    (s, m), = _samples(root)
    assert [f.getpixel((0, 0))[0] for f in m[0].frames] == [20 * i for i in range(1, 13)]


def test_a_changed_frames_folder_rebuilds(tmp_path):
    _frames_dir(tmp_path / "scan", n=10)
    cfg = _cfg(tmp_path, [_row(0, video={"path": "scan", "fps": 1})], num_frames=32)
    build_data(cfg, tmp_path / "out", seed=0)
    for i in (10, 11):  # two more frames, none of them a file the first build read
        Image.new("RGB", (40, 40), (20 * i, 0, 0)).save(tmp_path / "scan" / f"f{i:04d}.png")
    root = build_data(cfg, tmp_path / "out", seed=0)
    (s, m), = _samples(root)
    assert len(m[0]) == 12


def test_frame_count_never_exceeds_num_frames():
    from m2r.eval.vsibench import frame_count

    assert frame_count(100, 30.0, 1, 1.0) == 1 and frame_count(100, 30.0, 16, 1.0) == 3 and frame_count(100, 30.0, 16, 0.01) == 2
    assert frame_count(5, 30.0, 16, None) == 5


@pytest.mark.parametrize("video, text", [
    ({"frames": ["vid0_f000.png"], "fps": float("inf")}, "fps inf"),
    ({"frames": ["vid0_f000.png"], "fps": -1, "timestamps": [0.0]}, "fps -1"),
    ({"frames": [1], "fps": 1}, "frame names"),
])
def test_schema_refuses_bad_video_entries(video, text):
    import io

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    s = Sample(id="a", task="t", question="q", answer="1", answer_type="number", videos=[video])
    with pytest.raises(BadSampleError, match=text):
        validate_sample(s, [buf.getvalue()], "here")
