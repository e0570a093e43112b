"""`stage=eval`: score a model, or an existing predictions file, on a benchmark in its native format.

With a model: batched generation (greedy by default) on the benchmark's official prompt or the
M2 system prompt and response format (`benchmark.prompt=official|m2`). With
`eval.predictions=FILE`: no model; FILE is JSONL with, per benchmark row, the row's identifying
fields as in the benchmark file (MATH-V `id`; We-Math `ID` and `key`) and `response`.

Writes `<run>/eval/<benchmark>/`: `samples.jsonl` (response, extracted answer, correct),
`metrics.json`, and `table.md` in the layout of the paper's table with the paper's rows for
M2-Reasoning-7B and Qwen2.5-VL-7B beside the model under test.

Benchmarks: MathVista (`mathvista`), MATH-V (`mathvision`), MathVerse (`mathverse`), DynaMath
(`dynamath`), We-Math (`wemath`), LogicVista (`logicvista`), CV-Bench (`cvbench`), VSI-Bench
(`vsibench`): the paper's eight; and the embedded held-out set (`embedded`). Any of them also
reads a VLMEvalKit TSV (`benchmark.format=tsv`, rows keyed by `index`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from m2r.data.collate import M2_SYSTEM_PROMPT
from m2r.eval import cvbench, dynamath, embedded, logicvista, mathverse, mathvision, mathvista, vsibench, wemath
from m2r.eval.items import EvalItem
from m2r.eval.metrics import RowResults
from m2r.progress import progress

log = logging.getLogger(__name__)

BENCHMARKS = {
    "mathvista": mathvista, "mathvision": mathvision, "mathverse": mathverse, "dynamath": dynamath, "wemath": wemath, "logicvista": logicvista,
    "cvbench": cvbench, "vsibench": vsibench, "embedded": embedded,
}
# Columns of the paper's tables (header, metric key) and the paper's rows (seeds: model card), for reference.
COLUMNS = {
    "mathvista": [("MathVista", "score")],
    "mathvision": [("MathVision", "score")],
    "mathverse": [("MathVerse (vision only)", "score")],
    "logicvista": [("LogicVista", "score")],
    "wemath": [("WeMath", "score")],
    "dynamath": [("DynaMath (worst case)", "worst_case"), ("average", "average")],
    "cvbench": [("Count", "task/Count"), ("Relation", "task/Relation"), ("Depth", "task/Depth"), ("Distance", "task/Distance"), ("Avg.", "task_mean"), ("Overall (official)", "overall")],
    "embedded": [("spatial", "spatial"), ("general", "general"), ("mean over tasks", "overall")],
    "vsibench": [("OC", "task/object_counting"), ("AD", "task/object_abs_distance"), ("OS", "task/object_size_estimation"), ("RS", "task/room_size_estimation"),
                 ("RDs", "task/object_rel_distance"), ("RDr", "task/object_rel_direction"), ("RP", "task/route_planning"), ("AO", "task/obj_appearance_order"), ("Avg.", "overall")],
}
PAPER = {
    "mathvista": {"M2-Reasoning-7B": [75.0], "Qwen2.5-VL-7B": [68.1]},
    "mathvision": {"M2-Reasoning-7B": [31.5], "Qwen2.5-VL-7B": [25.4]},
    "mathverse": {"M2-Reasoning-7B": [44.7], "Qwen2.5-VL-7B": [41.1]},
    "logicvista": {"M2-Reasoning-7B": [50.0], "Qwen2.5-VL-7B": [47.9]},
    "wemath": {"M2-Reasoning-7B": [41.8], "Qwen2.5-VL-7B": [36.2]},
    "dynamath": {"M2-Reasoning-7B": [26.8, None], "Qwen2.5-VL-7B": [21.8, None]},
    "cvbench": {"M2-Reasoning-7B": [66.6, 92.8, 89.3, 84.3, 82.3, None], "Qwen2.5-VL-7B-Instruct": [65.2, 86.6, 70.6, 79.8, 75.0, None]},
    "embedded": {},
    "vsibench": {"M2-Reasoning-7B": [41.0, 34.0, 60.9, 55.4, 40.7, 47.3, 29.9, 28.8, 42.3], "Qwen2.5-VL-7B-Instruct": [37.7, 20.1, 49.7, 37.4, 38.5, 40.4, 31.4, 32.0, 35.9]},
}


def _m2_prompt(item: EvalItem) -> str:
    q = item.question.replace("<image1>", "").strip()
    if item.options:
        opts = "\n".join(o if o[:2] in {f"{chr(65 + i)}." for i in range(26)} else f"{chr(65 + i)}. {o}" for i, o in enumerate(item.options))
        q = f"{q}\nOptions:\n{opts}"
    return q


def read_predictions(path: str | Path, items: list[EvalItem]) -> list[str | None]:
    """Responses in item order, matched on the items' identifying fields; None where missing."""
    fields = list(items[0].key)
    by_key: dict[tuple, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"eval.predictions={path} line {lineno}: not valid JSON ({e.msg}); write one JSON object per line") from e
            missing = [k for k in fields + ["response"] if k not in row]
            if missing:
                raise ValueError(f"eval.predictions={path} line {lineno}: missing field(s) {missing}; each line needs {fields + ['response']}")
            by_key[tuple(str(row[k]) for k in fields)] = row["response"]
    responses = [by_key.get(tuple(str(it.key[k]) for k in fields)) for it in items]
    n_missing = sum(r is None for r in responses)
    if n_missing:
        log.warning("%d of %d benchmark rows have no prediction in %s; they count as wrong", n_missing, len(items), path)
    return responses


@torch.no_grad()
def generate_responses(model, processor, items: list[EvalItem], prompt_style: str, batch_size: int, max_new_tokens: int, greedy: bool = True, temperature: float = 1.0) -> list[str]:
    """Batched generation for the benchmark rows (left-padded, KV cache)."""
    from m2r.data.media import content_parts, processor_inputs
    from m2r.rl.rollout import vision_token_ids

    device = next(model.parameters()).device
    tok = processor.tokenizer
    out: list[str] = []
    model.eval()
    module = BENCHMARKS.get(prompt_style)
    with progress() as bar:
        task = bar.add_task("generate", total=len(items))
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            texts, media = [], []
            for it in chunk:
                m = it.open_media()  # images, and videos through the processor's video path
                text = module.prompt(it) if module is not None else _m2_prompt(it)
                msgs = ([] if module is not None else [{"role": "system", "content": [{"type": "text", "text": M2_SYSTEM_PROMPT}]}]) + [
                    {"role": "user", "content": content_parts(m) + [{"type": "text", "text": text}]}]
                texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
                media.append(m)
            side, tok.padding_side = tok.padding_side, "left"
            try:
                inputs = processor_inputs(processor, texts, media, padding=True, return_tensors="pt").to(device)
            finally:
                tok.padding_side = side
            gen = model.generate(**inputs, do_sample=not greedy, temperature=temperature if not greedy else None, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id, suppress_tokens=vision_token_ids(model, processor) or None)
            out.extend(tok.batch_decode(gen[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
            bar.advance(task, len(chunk))
    return out


def score_benchmark(name: str, items: list[EvalItem], responses: list[str | None], sharded: bool = False) -> tuple[list[dict], dict[str, Any]]:
    """Per-sample records and the benchmark's metrics. Row scores are gathered in a torchmetrics
    Metric, so the same code reduces across ranks when generation is sharded (`sharded`); when one
    process scores everything (the recipe's held-out steps on rank 0) it must not wait for the others."""
    module = BENCHMARKS[name]
    rows = RowResults(sync_on_compute=sharded)
    samples = []
    for i, (it, r) in enumerate(zip(items, responses)):
        try:
            s = module.score(it, r or "") if r is not None else {"extracted": None, "correct": False}
        except Exception as e:  # one strange response must not end a whole evaluation: it counts as wrong, and is logged
            log.warning("%s row %s: the scorer raised %s: %s; counted as wrong", name, it.key, type(e).__name__, e)
            s = {"extracted": None, "correct": False, "error": f"{type(e).__name__}: {e}"}
        value = float(s.get("score", float(s["correct"])))
        rows.update(i, value)
        samples.append({**it.key, "response": r, "extracted": s["extracted"], "correct": s["correct"], "score": value, "answer": it.answer})
    scores = dict(rows.compute())
    metrics = module.aggregate(items, [scores[i] for i in range(len(items))])
    # The failure modes the paper names, measured wherever responses are produced: length and loops.
    from m2r.rl.rollout import repetition_loop

    given = [r for r in responses if r is not None]
    metrics["responses"] = {
        "answered": len(given) / max(1, len(items)),
        "words_mean": sum(len(r.split()) for r in given) / max(1, len(given)),
        "repetition": sum(repetition_loop(r) for r in given) / max(1, len(given)),
    }
    return samples, metrics


def table(name: str, model_label: str, metrics: dict[str, Any]) -> str:
    """Markdown in the layout of the paper's table for this benchmark, paper rows first."""
    cols = COLUMNS[name]
    lines = ["| Models | " + " | ".join(h for h, _ in cols) + " |", "|:---|" + ":---:|" * len(cols)]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for model, vals in PAPER[name].items():
        lines.append(f"| {model} (paper) | " + " | ".join(fmt(v) for v in vals) + " |")
    lines.append(f"| **{model_label}** | " + " | ".join(fmt(None if metrics.get(k) is None else 100 * metrics[k]) for _, k in cols) + " |")
    note = " We-Math: Score (strict), the paper's convention." if name == "wemath" else ""
    if metrics.get("extraction"):
        note += f" Answer extraction: {metrics['extraction']}."
    return "\n".join(lines) + f"\n\nScores in %; rule-based scoring following the benchmark's official code.{note}\n"


def write_outputs(out_dir: Path, name: str, model_label: str, samples: list[dict], metrics: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "table.md").write_text(table(name, model_label, metrics))
