"""`stage=eval`: score a model, or an existing predictions file, on a benchmark in its native format.

With a model: batched generation (greedy by default) on the benchmark's official prompt or the
M2 system prompt and response format (`benchmark.prompt=official|m2`). With
`eval.predictions=FILE`: no model; FILE is JSONL with, per benchmark row, the row's identifying
fields as in the benchmark file (MATH-V `id`; We-Math `ID` and `key`) and `response`.

Writes `<run>/eval/<benchmark>/`: `samples.jsonl` (response, extracted answer, correct),
`metrics.json`, and `table.md` in the layout of the paper's table with the paper's rows for
M2-Reasoning-7B and Qwen2.5-VL-7B beside the model under test.

Implemented benchmarks so far: MATH-V (`mathvision`) and We-Math (`wemath`). The other six of
the paper's eight are not yet here (see the README).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from m2r.data.collate import M2_SYSTEM_PROMPT
from m2r.eval import mathvision, wemath
from m2r.eval.mathvision import EvalItem
from m2r.eval.metrics import GroupAccuracy, RowResults
from m2r.progress import progress

log = logging.getLogger(__name__)

BENCHMARKS = {"mathvision": mathvision, "wemath": wemath}
# The paper's rows (seeds: model card), for reference beside the model under test.
PAPER = {
    "mathvision": {"M2-Reasoning-7B": 31.5, "Qwen2.5-VL-7B": 25.4},
    "wemath": {"M2-Reasoning-7B": 41.8, "Qwen2.5-VL-7B": 36.2},
}
TITLES = {"mathvision": "MathVision", "wemath": "WeMath"}


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
            texts, images = [], []
            for it in chunk:
                imgs = it.open_images()
                text = module.prompt(it) if module is not None else _m2_prompt(it)
                msgs = ([] if module is not None else [{"role": "system", "content": [{"type": "text", "text": M2_SYSTEM_PROMPT}]}]) + [
                    {"role": "user", "content": [{"type": "image"} for _ in imgs] + [{"type": "text", "text": text}]}]
                texts.append(processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
                images.extend(imgs)
            side, tok.padding_side = tok.padding_side, "left"
            try:
                inputs = processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(device)
            finally:
                tok.padding_side = side
            gen = model.generate(**inputs, do_sample=not greedy, temperature=temperature if not greedy else None, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id, suppress_tokens=vision_token_ids(model, processor) or None)
            out.extend(tok.batch_decode(gen[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
            bar.advance(task, len(chunk))
    return out


def score_benchmark(name: str, items: list[EvalItem], responses: list[str | None]) -> tuple[list[dict], dict[str, Any]]:
    """Per-sample records and the benchmark's metrics."""
    module = BENCHMARKS[name]
    groups = sorted({str(it.meta.get("subject") or "all") for it in items})
    acc = GroupAccuracy(groups)
    rows = RowResults()
    samples = []
    for i, (it, r) in enumerate(zip(items, responses)):
        s = module.score(it, r or "") if r is not None else {"extracted": None, "correct": False}
        acc.update(str(it.meta.get("subject") or "all"), float(s["correct"]))
        rows.update(i, float(s["correct"]))
        samples.append({**it.key, "response": r, "extracted": s["extracted"], "correct": s["correct"], "answer": it.answer})
    metrics: dict[str, Any] = {"accuracy": acc.compute()}
    if name == "wemath":
        per_row = rows.compute()
        metrics["four_dimensional"] = wemath.four_dimensional([(items[i].key["ID"], items[i].key["key"], bool(c)) for i, c in per_row])
        metrics["score"] = metrics["four_dimensional"]["score_strict"]
    else:
        metrics["score"] = metrics["accuracy"]["overall"]
    return samples, metrics


def table(name: str, model_label: str, metrics: dict[str, Any]) -> str:
    """Markdown in the layout of the paper's general-reasoning table (this benchmark's column)."""
    title = TITLES[name]
    lines = ["| Models | " + title + " |", "|:---|:---:|"]
    for model, v in PAPER[name].items():
        lines.append(f"| {model} (paper) | {v:.1f} |")
    lines.append(f"| **{model_label}** | {100 * metrics['score']:.1f} |")
    note = " (We-Math: Score (strict), the paper's convention)" if name == "wemath" else ""
    return "\n".join(lines) + f"\n\nScores in %{note}; rule-based scoring following the benchmark's official code.\n"


def write_outputs(out_dir: Path, name: str, model_label: str, samples: list[dict], metrics: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "samples.jsonl", "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (out_dir / "table.md").write_text(table(name, model_label, metrics))
