"""The importer: a user's JSONL, JSON or parquet rows into validated m2r samples.

Files: JSONL (UTF-8, UTF-8 with a byte-order mark, UTF-16 with one, or gzipped), a JSON array
(LLaVA's own `llava_instruct_150k.json` shape), parquet (Hugging Face's image structs included),
or a folder of such files. A file that cannot be read as one of these (missing, corrupt, empty,
UTF-16 without a byte-order mark) is a `BadFileError` naming the file and the fix, whatever
`data.on_bad_sample` says: there is no row to skip.

Rows: the m2r schema (`id, task, images, question, choices, answer, answer_type, cot, ...`) or a
conversation (LLaVA / ShareGPT: `conversations: [{from: human|gpt, value}]` or `messages: [{role:
user|assistant, content}]`, images under `image` or `images`). A conversation's assistant turn
gives the answer: the last balanced `\\boxed{}` in it (or in its `<answer>` span), else the span,
else the whole turn (plain VQA data: `{"from": "gpt", "value": "rectangle"}`). It is also the SFT
target: kept when already in the M2 format, else wrapped in it (`data.llava_target=wrap`) or kept
as written (`keep`).

Videos: `video` (or `videos`, a list) is a video file (mp4, webm, ... decoded with PyAV), a folder of
frames, or `{"path": ..., "fps": ..., "timestamps": [...]}` / `{"frames": [paths], "fps": ...}`.
`data.num_frames` frames are sampled uniformly (with `data.video_fps`, the video's length times that
rate, at most `data.num_frames`) and stored as JPEG frame members with their rate, so training never
decodes a video. A folder or list of frames needs the rate they were taken at (`fps`) or their
`timestamps`. `<video>` tokens in the question, when present, must match the videos.

Every field is checked for type and range and every image is decoded in full, so that a row
which would crash training later is refused here: a `BadSampleError` naming file, line, id, field
and fix, or under `data.on_bad_sample=skip` a counted skip (the manifest lists each one).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from m2r.data.schema import ANSWER_TYPES, LETTERS, BadSampleError, Sample

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")
TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(/[A-Za-z0-9][A-Za-z0-9_\-]*)*$")
MAX_TASK_CHARS = 64
MAX_ID_CHARS = 128
MIN_IMAGE_SIDE = 28  # Qwen2.5-VL's patch merge unit (14 px x 2); smaller images cannot be resized to a grid
MAX_ASPECT = 200  # Qwen2.5-VL's processor refuses images past this aspect ratio


class BadFileError(ValueError):
    """A data file that cannot be read at all; names the file and the fix."""

    def __init__(self, path: Path | str, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: {problem}. Fix: {fix}")


# ------------------------------------------------------------------------------------------- files


def data_files(paths: list[str], key: str) -> list[Path]:
    """The files behind `data.<key>`: each path as given, a folder expanded to its data files."""
    out = []
    for f in paths:
        path = Path(os.path.expanduser(str(f)))
        if not path.exists():
            raise BadFileError(path, f"data.{key} names a file that does not exist", "fix the path (relative paths start from where you run m2r)")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(DATA_SUFFIXES))
            if not found:
                raise BadFileError(path, f"data.{key} names a folder with no {'/'.join(DATA_SUFFIXES)} files", "name the data files themselves")
            out += found
        else:
            out.append(path)
    return out


def read_rows(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) pairs of one file; a row that cannot be read comes back as a BadSampleError."""
    if path.suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise BadFileError(path, f"is gzipped but cannot be decompressed ({e})", "re-compress it, or give the uncompressed file") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        try:
            raw = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError as e:
            raise BadFileError(path, f"has a UTF-16 byte-order mark but is not valid UTF-16 ({e.reason})", "re-save it as UTF-8") from None
    elif raw[:3] == b"\xef\xbb\xbf":
        raw = raw[3:]
    elif b"\x00" in raw[:4096]:
        raise BadFileError(path, "holds NUL bytes: it looks like UTF-16 or UTF-32 without a byte-order mark, or a binary file", "re-save it as UTF-8 JSONL (one JSON object per line)")
    if not raw.strip():
        raise BadFileError(path, "is empty", "remove it from the file list, or fill it")
    if raw.lstrip()[:1] == b"[":  # one JSON array (LLaVA's own files)
        try:
            rows = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise BadFileError(path, f"is not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start})", "re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8") from None
        except json.JSONDecodeError as e:
            raise BadFileError(path, f"starts with '[' but is not a valid JSON array ({e.msg} at line {e.lineno} column {e.colno})", "fix the JSON, or write one object per line (JSONL)") from None
        for i, row in enumerate(rows):
            yield f"{path} item {i}", row
        return
    for lineno, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            yield where, BadSampleError(where, None, "<row>", f"not UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})", "re-save the file as UTF-8, e.g. iconv -f latin1 -t utf-8")
            continue
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as e:
            yield where, BadSampleError(where, None, "<row>", f"not valid JSON ({e.msg} at column {e.colno})", "fix the line so it is one JSON object, or remove it")
        except RecursionError:
            yield where, BadSampleError(where, None, "<row>", "JSON nested too deeply", "flatten the row")


def _parquet_rows(path: Path) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        raise BadFileError(path, f"is not a readable parquet file ({type(e).__name__}: {e})", "re-export it, or convert it to JSONL") from None
    if pf.metadata.num_rows == 0:
        raise BadFileError(path, "is empty (0 rows)", "remove it from the file list, or fill it")
    i = 0
    try:
        for batch in pf.iter_batches(batch_size=256):
            for row in batch.to_pylist():
                yield f"{path} row {i}", row
                i += 1
    except Exception as e:
        raise BadFileError(path, f"is not a readable parquet file: damaged after row {i} ({type(e).__name__}: {e})", "re-export it, or convert it to JSONL") from None


# -------------------------------------------------------------------------------------------- rows


def _last_boxed(text: str) -> str | None:
    from m2r.rewards.extract import last_boxed

    return last_boxed(text)


def answer_from_turn(text: str) -> str | None:
    """The answer an assistant turn gives: its last `\\boxed{}` (balanced; in the `<answer>` span
    when there is one), else the span, else the whole turn."""
    spans = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    inner = spans[-1] if spans else text
    boxed = _last_boxed(inner)
    if boxed is not None:
        return boxed.strip()
    return (spans[-1] if spans else text).strip() or None


def _in_m2_format(text: str) -> bool:
    return bool(re.search(r"<think>.+?</think>\s*<answer>.+?</answer>", text, re.S))


def m2_target(turn: str, answer: str) -> str:
    """An assistant turn written in the M2 response format (its text as the reasoning)."""
    return f"<think>\n{turn.strip()}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"


def infer_answer_type(answer: str, choices: list) -> str:
    """choice (options given), number (`3`, `1,234.5`), expression (math: digits or LaTeX with an
    operator, `1/2`, `x^2+1`, `\\frac{1}{2}`, `\\sqrt{3}`), else text (`yes`, `left`)."""
    if choices:
        return "choice"
    a = str(answer).strip()
    try:
        float(a.replace(",", ""))
        return "number"
    except ValueError:
        pass
    if re.search(r"\\[a-zA-Z]+|[\^_=/*+]|\d\s*[a-zA-Z]\b|^-?[a-zA-Z]$|\(|-\s*\d", a) and not re.search(r"[a-zA-Z]{3,}", re.sub(r"\\[a-zA-Z]+", "", a)):
        return "expression"  # math, not words (a word of 3+ letters outside LaTeX commands makes it text)
    return "text"


class _Row:
    """Field access with type checks; each failure a BadSampleError naming the field."""

    def __init__(self, row: dict, where: str, sid: str | None) -> None:
        self.row, self.where, self.sid = row, where, sid

    def bad(self, field: str, problem: str, fix: str) -> BadSampleError:
        return BadSampleError(self.where, self.sid, field, problem, fix)

    def text(self, field: str, value: Any, limit: int, knob: str, numbers: bool = False) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float) if numbers else str):
            raise self.bad(field, f"is a {type(value).__name__} ({_short(value)}), not {'text or a number' if numbers else 'text'}", f"write '{field}' as a string")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.bad(field, f"is {value}, not a finite number", f"give the real {field}")
        value = value if isinstance(value, str) else (str(int(value)) if isinstance(value, float) and value.is_integer() else str(value))
        if len(value) > limit:
            raise self.bad(field, f"is {len(value):,} characters long (limit {limit:,})", f"shorten it, or raise data.{knob}")
        if "\x00" in value:
            raise self.bad(field, "holds a NUL character", "remove it")
        return value

    def fraction(self, field: str) -> float | None:
        v = self.row.get(field)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
            raise self.bad(field, f"is {_short(v)}, not a number in [0, 1]", f"give '{field}' as a number from 0 to 1, or leave it out")
        return float(v)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _image_refs(r: _Row, value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, dict, bytes, bytearray)):
        return [value]
    if isinstance(value, list) and all(isinstance(x, (str, dict, bytes, bytearray)) for x in value):
        return value
    raise r.bad("images", f"is {_short(value)}, not a path, image bytes or a list of them", "give 'images' as a list of paths relative to data.image_root")


def _turns(r: _Row) -> tuple[str, str | None]:
    """(user text, assistant text) of a single-turn conversation."""
    key = "conversations" if "conversations" in r.row else "messages"
    convs = r.row.get(key)
    if not isinstance(convs, list) or not convs or not all(isinstance(c, dict) for c in convs):
        raise r.bad(key, f"is {_short(convs)}, not a list of turns", f"write '{key}' as [{{\"from\": \"human\", \"value\": ...}}, {{\"from\": \"gpt\", \"value\": ...}}]")
    users, assistants = [], []
    for c in convs:
        who, value = c.get("from", c.get("role")), c.get("value", c.get("content"))
        if who == "system":
            continue
        if not isinstance(value, str):
            raise r.bad(key, f"a turn's text is {_short(value)}, not a string", "give every turn its text under 'value' (or 'content')")
        if who in ("human", "user"):
            users.append(value)
        elif who in ("gpt", "assistant"):
            assistants.append(value)
        else:
            raise r.bad(key, f"a turn is from {who!r}", "name turns 'human'/'gpt' (LLaVA) or 'user'/'assistant' (messages)")
    if len(users) != 1 or len(assistants) > 1:
        raise r.bad(key, f"has {len(users)} user and {len(assistants)} assistant turns", "split a multi-turn conversation into one row per question")
    return users[0], assistants[0] if assistants else None


def row_to_sample(row: Any, where: str, split: str, cfg: Any) -> tuple[Sample, list[bytes], list[Path]]:
    """One imported row -> (Sample, image bytes, image files read). Raises BadSampleError naming the field.
    `cfg` is the DataConfig (format, image_root, limits, llava_target); a train row needs an SFT
    target (val rows without one serve held-out evaluation; SFT then skips validation)."""
    if not isinstance(row, dict):
        raise BadSampleError(where, None, "<row>", f"row is a {type(row).__name__}, not a JSON object", "write one JSON object per line")
    raw_id = row.get("id")
    sid = str(raw_id) if isinstance(raw_id, (str, int)) and not isinstance(raw_id, bool) else None
    r = _Row(row, where, sid)
    if sid is None or not sid:
        raise r.bad("id", "missing" if raw_id is None else f"is {_short(raw_id)}, not a string or integer", "give every row a unique 'id' (letters, digits, '_' or '-')")
    if len(sid) > MAX_ID_CHARS:
        raise r.bad("id", f"is {len(sid)} characters long (limit {MAX_ID_CHARS})", "use shorter ids")
    conversation = cfg.format == "llava" or (cfg.format == "auto" and ("conversations" in row or "messages" in row))
    choices = row.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list) or not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in choices):
        raise r.bad("choices", f"is {_short(choices)}, not a list of option texts", 'write the options as a list, e.g. ["3", "4", "5"] (the answer is then a letter)')
    if len(choices) > len(LETTERS):
        raise r.bad("choices", f"has {len(choices)} options; at most {len(LETTERS)} can be lettered A-Z", "keep at most 26 options")
    choices = [r.text("choices", c, cfg.max_answer_chars, "max_answer_chars", numbers=True) for c in choices]
    refs = _image_refs(r, row.get("images", row.get("image")))
    video_refs = _video_refs(r, row.get("videos", row.get("video")))
    if conversation:
        user, assistant = _turns(r)
        tokens = user.count("<image>")
        video_tokens = user.count("<video>")
        question = re.sub(r"\s*<(image|video)>\s*", " ", user).strip()
        answer = row.get("answer")
        if answer is None and assistant is not None:
            answer = answer_from_turn(assistant)
        cot = None
        if assistant is not None and assistant.strip():
            cot = assistant if cfg.llava_target == "keep" or _in_m2_format(assistant) or answer is None else m2_target(assistant, str(answer))
    else:
        question, answer, cot = row.get("question"), row.get("answer"), row.get("cot")
        tokens = question.count("<image>") if isinstance(question, str) else 0
        video_tokens = question.count("<video>") if isinstance(question, str) else 0
        if isinstance(question, str):
            question = re.sub(r"\s*<(image|video)>\s*", " ", question).strip()
    question = r.text("question", question, cfg.max_question_chars, "max_question_chars")
    answer = r.text("answer", answer, cfg.max_answer_chars, "max_answer_chars", numbers=True)
    cot = r.text("cot", cot, cfg.max_cot_chars, "max_cot_chars")
    if tokens and tokens != len(refs):
        raise r.bad("images", f"the question has {tokens} <image> token(s) but the row has {len(refs)} image(s)", "give one image per <image> token")
    if video_tokens and video_tokens != len(video_refs):
        raise r.bad("videos", f"the question has {video_tokens} <video> token(s) but the row has {len(video_refs)} video(s)", "give one video per <video> token")
    if answer is not None and answer.strip().startswith("\\boxed"):
        inner = _last_boxed(answer)
        if inner is None or f"\\boxed{{{inner}}}" != answer.strip():
            raise r.bad("answer", f"{_short(answer)} is not one balanced \\boxed{{}}", "store the answer without the box, e.g. \\frac{1}{2}")
        answer = inner.strip()
    if answer is None or not answer.strip():
        raise r.bad("answer", "missing", "add an 'answer' field, or a final answer (\\boxed{...}) in the assistant turn")
    answer = answer.strip()
    answer_type = row.get("answer_type") or infer_answer_type(answer, choices)
    if answer_type not in ANSWER_TYPES:
        raise r.bad("answer_type", f"unknown answer_type {_short(answer_type)}", f"use one of {', '.join(ANSWER_TYPES)}")
    if answer_type == "number":
        try:
            value = float(answer.replace(",", ""))
        except ValueError:
            value = None
        if value is not None and not math.isfinite(value):
            raise r.bad("answer", f"{answer!r} is not a finite number, so no response can score on it", "give the real number, or drop the row")
    if answer_type == "expression" and answer.count("{") != answer.count("}"):
        raise r.bad("answer", f"{_short(answer)} has unbalanced braces", "fix the LaTeX of the answer")
    task = row.get("task") or "imported"
    if not isinstance(task, str) or len(task) > MAX_TASK_CHARS or not TASK_RE.match(task):
        raise r.bad("task", f"{_short(task)} is not a task name", f"use up to {MAX_TASK_CHARS} letters, digits, '_', '-' in '/'-separated parts, e.g. 'spatial/count'")
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise r.bad("meta", f"is {_short(meta)}, not an object", "give 'meta' as a JSON object, or leave it out")
    if split == "train" and not (cot and cot.strip()):
        raise r.bad("cot", f"missing in a {split} row: SFT trains on this reasoning trace", "add a 'cot' in the M2 format (<think>...</think><answer>...</answer>), or put the row in data.rl_files/test_files")
    images, names, files = [], [], []
    base = Path(cfg.image_root) if cfg.image_root else Path(where.rsplit(" ", 2)[0]).parent
    for k, ref in enumerate(refs):
        data, ext, path = _load_image(r, ref, base)
        check_image(r, data, k, cfg.max_image_pixels)
        images.append(data)
        names.append(f"img{k}.{ext}")
        if path is not None:
            files.append(path)
    videos = []
    for v, ref in enumerate(video_refs):
        frames, entry, read = _load_video(r, ref, base, v, cfg)
        images.extend(frames)
        videos.append(entry)
        files.extend(read)
    sample = Sample(
        id=sid, task=task, question=question or "", answer=answer, answer_type=answer_type, images=names, videos=videos, choices=choices, cot=cot,
        quality=r.fraction("quality"), difficulty=r.fraction("difficulty"), source=str(row.get("source") or where.rsplit(" ", 2)[0]), meta=meta,
    )
    return sample, images, files


VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")


def _video_refs(r: _Row, value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, list) and all(isinstance(x, (str, dict)) for x in value):
        return value
    raise r.bad("videos", f"is {_short(value)}, not a video path, a frames folder or a list of them",
                'give \'video\' as a path (a video file or a folder of frames) or {"path": ..., "fps": ...}')


def _load_video(r: _Row, ref: Any, base: Path, v: int, cfg: Any) -> tuple[list[bytes], dict, list[Path]]:
    """(JPEG bytes of the sampled frames, the sample's `videos` entry, the files read) for one video reference."""
    from m2r.data.media import fps_from_timestamps, frame_files, sampled_fps
    from m2r.data.video import frame_count, read_video, uniform_indices

    spec = ref if isinstance(ref, dict) else {"path": ref}
    rate, stamps = spec.get("fps"), spec.get("timestamps")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0):
        raise r.bad("videos", f"video {v} has fps {_short(rate)}", "give the rate of the video's frames as a number > 0")

    def resolve(x: Any) -> Path:
        if not isinstance(x, str) or not x or "\x00" in x:
            raise r.bad("videos", f"video {v}: {_short(x)} is not a path", "give paths relative to data.image_root")
        p = Path(x) if os.path.isabs(x) else base / x
        if not p.exists():
            raise r.bad("videos", f"video {v}: {p} does not exist", "fix the path, or set data.image_root to the folder the relative paths start from")
        return p

    if spec.get("frames") is not None:
        if not isinstance(spec["frames"], list) or not spec["frames"]:
            raise r.bad("videos", f"video {v} has frames {_short(spec['frames'])}", "list the frame image paths in time order")
        files = [resolve(f) for f in spec["frames"]]
    else:
        path = resolve(spec.get("path"))
        files = frame_files(path) if path.is_dir() else None
        if files is None:
            if rate is not None or stamps is not None:
                raise r.bad("videos", f"video {v}: fps/timestamps given for the video file {path}", "leave them out: a video file carries its own; they describe a folder or list of frames")
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                raise r.bad("videos", f"video {v}: {path} is neither a video file ({', '.join(VIDEO_SUFFIXES)}) nor a folder of frames", "give a video file or a folder of jpg/png frames")
            try:
                video = read_video(path, cfg.num_frames, cfg.video_fps)
            except ImportError:
                raise r.bad("videos", f"video {v}: decoding {path} needs PyAV", "pip install av, or extract the frames into a folder and give that with its fps") from None
            except Exception as e:  # PyAV raises many types for a broken file
                raise r.bad("videos", f"video {v}: {path} cannot be decoded ({type(e).__name__}: {e})", "re-encode the video, or give its frames as a folder") from None
            frames = [_jpeg(im) for im in video.frames]
            for k, data in enumerate(frames):
                check_image(r, data, k, cfg.max_image_pixels, "videos")
            entry = {"frames": [f"vid{v}_f{k:03d}.jpg" for k in range(len(frames))], "fps": video.fps}
            if video.timestamps:
                entry["timestamps"] = [round(t, 6) for t in video.timestamps]
            return frames, entry, [path]
        if not files:
            raise r.bad("videos", f"video {v}: the folder {path} holds no jpg/png/webp frames", "put the frames in it, named so that they sort in time order")
    if stamps is not None:
        if not isinstance(stamps, list) or len(stamps) != len(files) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in stamps):
            raise r.bad("videos", f"video {v} has {len(files)} frames but timestamps {_short(stamps)}", "give one timestamp (seconds) per frame")
        try:
            fps_from_timestamps(stamps)
        except ValueError as e:
            raise r.bad("videos", f"video {v}: {e}", "list the frames in time order") from None
    elif rate is None:
        raise r.bad("videos", f"video {v} is a set of frames without fps or timestamps", 'give the rate the frames were taken at, e.g. {"path": "scene0/", "fps": 2}, or their "timestamps"')
    times = [float(t) for t in stamps] if stamps is not None else [k / float(rate) for k in range(len(files))]
    src_rate = float(rate) if rate is not None else fps_from_timestamps(times)
    idx = uniform_indices(len(files), frame_count(len(files), src_rate, cfg.num_frames, cfg.video_fps))
    frames = []
    for k, i in enumerate(idx):
        data = files[i].read_bytes()
        check_image(r, data, k, cfg.max_image_pixels, "videos")
        frames.append(data)
    ts = [times[i] for i in idx]
    entry = {"frames": [f"vid{v}_f{k:03d}.{_ext(d, files[i].suffix.lstrip('.').lower())}" for k, (i, d) in enumerate(zip(idx, frames))],
             "fps": sampled_fps(ts, src_rate), "timestamps": ts}
    # The folder too: adding or removing a frame changes its mtime, and the build is redone.
    folder = [] if spec.get("frames") is not None else [files[0].parent]
    return frames, entry, [files[i] for i in idx] + folder


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _load_image(r: _Row, ref: Any, base: Path) -> tuple[bytes, str, Path | None]:
    """Image bytes, a file extension, and the file read (None for inline bytes)."""
    if isinstance(ref, dict):
        if ref.get("bytes"):
            data = bytes(ref["bytes"])
            return data, _ext(data), None
        ref = ref.get("path")
    if isinstance(ref, (bytes, bytearray)):
        return bytes(ref), _ext(bytes(ref)), None
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise r.bad("images", f"image reference {_short(ref)} is neither a path nor bytes", "give image paths (relative to data.image_root) or image bytes")
    p = Path(ref) if os.path.isabs(ref) else base / ref
    if not p.exists():
        raise r.bad("images", f"image file {p} does not exist", "fix the path, or set data.image_root to the folder the relative paths start from")
    if not p.is_file():
        raise r.bad("images", f"image path {p} is a folder, not a file", "name the image file itself")
    data = p.read_bytes()
    return data, _ext(data, p.suffix.lstrip(".").lower()), p


def _ext(data: bytes, fallback: str = "png") -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return fallback if fallback in ("png", "jpg", "jpeg", "webp") else "png"


def check_image(r: _Row, data: bytes, k: int, max_pixels: int, field: str = "images") -> None:
    """Decode the image (or video frame, `field="videos"`) in full (a truncated or corrupt file fails here, not in
    training) and check its size against `data.max_image_pixels` and what the vision processor accepts."""
    what = "image" if field == "images" else "frame"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size check below says it better
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise r.bad(field, f"{what} {k} is {w}x{h} ({w * h:,} pixels; limit {max_pixels:,})", "downscale it, or raise data.max_image_pixels")
            if min(w, h) < MIN_IMAGE_SIDE or max(w, h) / min(w, h) > MAX_ASPECT:
                raise r.bad(field, f"{what} {k} is {w}x{h}: sides under {MIN_IMAGE_SIDE} px or an aspect ratio over {MAX_ASPECT} cannot be processed", "pad or resize it")
            im.load()
    except BadSampleError:
        raise
    except Exception as e:  # PIL raises many types for bad bytes (OSError, SyntaxError, DecompressionBombError, zlib.error, ...)
        raise r.bad(field, f"{what} {k} cannot be decoded ({type(e).__name__}: {e})", "replace the file with a valid PNG/JPEG/WebP, or drop the row") from None
