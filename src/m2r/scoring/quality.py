"""Quality scoring of reasoning traces on the paper's three dimensions (section 2.1.1).

The rule-based scorer gives each dimension a score in [0, 1]:

1. Structural correctness = mean of
   - `format`: the M2 response format holds (one `<think>` then one `<answer>`, both non-empty,
     a non-empty `\\boxed{}` in the answer), as `format_reward` checks it;
   - `answer`: the trace's final answer equals the ground truth (the accuracy reward of the
     sample's answer type with exact matching: option letter, exact number, math-verify, text).
2. Cognitive load = mean of
   - `length`: the reasoning has between `min_words` and `max_words` words;
   - `steps`: it has between `min_steps` and `max_steps` non-empty lines (reasoning steps);
   - `repetition`: the share of distinct word 4-grams is at least `min_distinct_4grams`, and the
     text does not end in an n-gram loop.
3. Verification richness = min(1, number of verification cues / `verification_target`), the cues
   being phrases that check or substitute back ("verify", "check", "substitut", "confirm",
   "double-check", "again", "consistent", "plug").

The total is the weighted mean of the three (`weights`); traces under `threshold` are dropped.
An optional judge (any local Hugging Face model prompted with `RUBRIC`) gives the three scores
on a 1-5 scale, parsed by `parse_judge`; unparsable judgements fall back to the rule-based scores
and are counted.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from m2r.data.curriculum import ShardReader
from m2r.data.schema import Sample
from m2r.data.shards import SplitWriter, read_manifest
from m2r.progress import progress
from m2r.rewards.functions import ACCURACY_BY_TYPE as ACCURACY
from m2r.rewards.functions import format_reward, text_reward
from m2r.rl.rollout import repetition_loop

VERIFY_CUES = re.compile(r"\b(verif\w*|check\w*|substitut\w*|confirm\w*|double-check\w*|again|consistent|plug\w*)\b", re.I)

RUBRIC = (
    "Rate the reasoning trace below on three dimensions, each from 1 (poor) to 5 (excellent):\n"
    "structural: the reasoning is in <think>...</think>, the answer in <answer>...</answer> with the key result in \\boxed{{}}, "
    "and the final answer is correct (ground truth: {answer});\n"
    "cognitive: the steps are clear, of reasonable length, without repetition;\n"
    "verification: the trace checks its result (substitutes back, re-derives, confirms).\n"
    "Reply exactly as: structural: <1-5>, cognitive: <1-5>, verification: <1-5>\n\nQuestion: {question}\n\nTrace:\n{trace}\n"
)


@dataclass
class QualityConfig:
    min_words: int = 15
    max_words: int = 2000
    min_steps: int = 2
    max_steps: int = 60
    min_distinct_4grams: float = 0.6
    verification_target: int = 1
    weights: dict[str, float] = field(default_factory=lambda: {"structural": 0.5, "cognitive": 0.25, "verification": 0.25})
    threshold: float = 0.8  # any one dimension lost (wrong answer, no tags, no verification: 0.75) drops the trace


@dataclass
class QualityScore:
    structural: float
    cognitive: float
    verification: float
    total: float
    parts: dict[str, float]


def _think(trace: str) -> str:
    m = re.search(r"<think>(.*?)</think>", trace, re.S)
    return m.group(1) if m else trace


def score_trace(trace: str | None, sample: Sample, cfg: QualityConfig | None = None) -> QualityScore:
    """The three rule-based sub-scores and their weighted total for one trace."""
    cfg = cfg or QualityConfig()
    trace = trace or ""
    fmt = format_reward(trace)
    acc_fn = ACCURACY.get(sample.answer_type, text_reward)
    answer = acc_fn(trace, sample, extraction="lenient")  # correctness alone: the format is its own part, not counted twice
    think = _think(trace)
    words = think.split()
    n_steps = sum(1 for line in think.splitlines() if line.strip())
    grams = [tuple(words[i : i + 4]) for i in range(max(0, len(words) - 3))]
    distinct = len(set(grams)) / len(grams) if grams else 0.0
    parts = {
        "format": fmt,
        "answer": answer,
        "length": float(cfg.min_words <= len(words) <= cfg.max_words),
        "steps": float(cfg.min_steps <= n_steps <= cfg.max_steps),
        "repetition": float(distinct >= cfg.min_distinct_4grams and not repetition_loop(think)),
        "verification_cues": float(len(VERIFY_CUES.findall(think))),
    }
    structural = (parts["format"] + parts["answer"]) / 2
    cognitive = (parts["length"] + parts["steps"] + parts["repetition"]) / 3
    verification = min(1.0, parts["verification_cues"] / max(1, cfg.verification_target))
    w = cfg.weights
    total = (w["structural"] * structural + w["cognitive"] * cognitive + w["verification"] * verification) / sum(w.values())
    return QualityScore(structural, cognitive, verification, total, parts)


_JUDGE = re.compile(r"(structural|cognitive|verification)\w*(?:\s+[a-z]+)?[\s*:=\-]*([1-5](?:\.\d+)?)(?![\d.])", re.I)


def parse_judge(text: str) -> dict[str, float] | None:
    """Scores in [0, 1] from a judge's reply ("structural: 4, cognitive: 5, verification: 2"),
    tolerant of case, markdown, "4/5", extra words and order; None unless all three are found."""
    found: dict[str, float] = {}
    for name, value in _JUDGE.findall(text or ""):
        found.setdefault(name.lower(), (float(value) - 1) / 4)
    return found if set(found) == {"structural", "cognitive", "verification"} else None


def judge_scores(model, processor, items: list[tuple[Sample, str]], batch_size: int = 8, max_new_tokens: int = 32, cfg: QualityConfig | None = None) -> tuple[list[QualityScore], int]:
    """Scores from a local judge model (text-only prompts with `RUBRIC`, greedy); an unparsable
    judgement falls back to the rule-based score. Returns (scores, number of fallbacks)."""
    import torch

    cfg = cfg or QualityConfig()
    tok = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    out: list[QualityScore] = []
    fallbacks = 0
    model.eval()
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        prompts = []
        for sample, trace in chunk:
            text = RUBRIC.format(answer=sample.answer, question=sample.question, trace=(trace or "")[:6000])
            # a processor's template takes typed content parts; a text model's tokenizer takes a string
            msg = [{"role": "user", "content": [{"type": "text", "text": text}] if tok is not processor else text}]
            prompts.append(processor.apply_chat_template(msg, tokenize=False, add_generation_prompt=True))
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        finally:
            tok.padding_side = side
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        replies = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        w = cfg.weights
        for (sample, trace), reply in zip(chunk, replies):
            judged = parse_judge(reply)
            if judged is None:
                fallbacks += 1
                out.append(score_trace(trace, sample, cfg))
                continue
            total = sum(w[k] * judged[k] for k in w) / sum(w.values())
            out.append(QualityScore(judged["structural"], judged["cognitive"], judged["verification"], total, {"judge_reply": 0.0}))
    return out, fallbacks


def load_judge(path: str):
    """A local judge model and what prompts it: an image-text-to-text checkpoint with its processor,
    else a causal LM with its tokenizer. Never downloads."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

    folder = Path(os.path.expanduser(path))
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"quality.judge={path} is not a local Hugging Face model folder (no config.json); m2r never downloads models")
    config = AutoConfig.from_pretrained(folder)
    if type(config) in AutoModelForImageTextToText._model_mapping:
        model, proc = AutoModelForImageTextToText.from_pretrained(folder), AutoProcessor.from_pretrained(folder)
    else:
        model, proc = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    if torch.cuda.is_available():
        model = model.cuda()
    return model.eval(), proc


def filter_traces(src_root, split: str, out_root, cfg: QualityConfig | None = None, judge=None, batch_size: int = 64) -> dict:
    """Score every trace of `<src_root>/<split>` and write the traces at or above `cfg.threshold`
    to `<out_root>/<split>` (same shard size), with each sample's `quality` set, and every score to
    `<out_root>/scores.jsonl`. `judge`: optional (model, processor) scoring instead of the rules.

    Returns the counts: in, kept, dropped, per task, and, where the embedded data injected a
    failure (`meta.trace_noise`), per failure how many were dropped, and how many clean traces were."""
    cfg = cfg or QualityConfig()
    manifest = read_manifest(src_root, split)
    per_shard = max((s["count"] for t in manifest["tasks"].values() for s in t["shards"]), default=1)
    out_root = Path(out_root)
    writer = SplitWriter(out_root, split, per_shard)
    reader = ShardReader()
    by_task: dict = defaultdict(lambda: {"in": 0, "kept": 0})
    noise: dict = defaultdict(lambda: {"n": 0, "dropped": 0})
    fallbacks = 0
    locs = [(str(Path(src_root) / split / s["path"]), pos) for t in manifest["tasks"].values() for s in t["shards"] for pos in range(s["count"])]
    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / "scores.jsonl", "w", encoding="utf-8") as f, progress() as bar:
        bar_id = bar.add_task(f"quality {split}", total=len(locs))
        for start in range(0, len(locs), batch_size):
            raws = [reader.record(p, i) for p, i in locs[start : start + batch_size]]
            samples = [Sample.from_dict(json.loads(r["json"])) for r in raws]
            if judge is not None:
                scores, fb = judge_scores(judge[0], judge[1], [(s, s.cot) for s in samples], cfg=cfg)
                fallbacks += fb
            else:
                scores = [score_trace(s.cot, s, cfg) for s in samples]
            for raw, sample, q in zip(raws, samples, scores):
                keep = q.total >= cfg.threshold
                kind = sample.meta.get("trace_noise", "clean")
                by_task[sample.task]["in"] += 1
                by_task[sample.task]["kept"] += keep
                noise[kind]["n"] += 1
                noise[kind]["dropped"] += not keep
                f.write(json.dumps({"id": sample.id, "task": sample.task, "total": round(q.total, 4), "structural": q.structural,
                                    "cognitive": round(q.cognitive, 4), "verification": q.verification, "kept": keep, "noise": kind}) + "\n")
                if keep:
                    sample.quality = round(q.total, 4)
                    writer.write(sample, [raw[name] for name in sample.members()])
            bar.advance(bar_id, len(raws))
    kept = sum(t["kept"] for t in by_task.values())
    total = sum(t["in"] for t in by_task.values())
    summary = {"in": total, "kept": kept, "dropped": total - kept, "threshold": cfg.threshold, "scorer": "judge" if judge else "rules",
               "judge_fallbacks": fallbacks, "by_task": dict(by_task), "by_noise": dict(noise)}
    if kept == 0:
        writer.abort()
        raise ValueError(f"quality filter kept no trace of {total} (threshold {cfg.threshold}); lower quality.threshold or check the traces in {out_root / 'scores.jsonl'}")
    writer.close({"quality": summary, "source": str(Path(src_root) / split)})
    return summary
