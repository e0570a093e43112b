"""Reward latency on adversarial answers (issue 10): every reward the `reward=m2` router computes,
one response per call, over answers written to be slow or to hang a parser (power towers, huge
factorials, deep nesting, megabyte answers, thousands of boxes, matrices, integrals, ...), then one
256-response rollout batch (16 prompts x G=16) scored with `score_batch` on a cold answer cache.

    python benchmarks/reward_latency.py            # prints the table, writes it into benchmarks/README.md

Bounds it checks (exit 1 when one fails): p99 per call under 50 ms, no call over the expression
timeout (+0.25 s of slack for killing and replacing a worker), each 256-response batch under 1 s.
The math-verify workers are started (and sympy imported) before timing: a training run starts
them once, at its first expression answer.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from m2r.data.schema import Sample  # noqa: E402
from m2r.rewards.router import RewardRouter  # noqa: E402

START, END = "<!-- reward_latency -->", "<!-- /reward_latency -->"


def W(content: str) -> str:
    return f"<think>Let me work it out step by step.</think><answer>The answer is \\boxed{{{content}}}.</answer>"


def adversarial() -> list[str]:
    """Answers (boxed contents or whole responses) meant to be slow; each is scored once per gold."""
    box = [
        # power towers and huge numbers
        "9^{9^{9^{9}}}", "2^{2^{2^{2^{2}}}}", "10^{10^{10}}", "9**9**9**9", "2^{100000}", "10^{999999}", "(10^{9999}+1)^{999}",
        "99999999999!", "100000!", "(100!)!", "10000!", "\\Gamma(10^{9})", "2^{2^{100}} \\bmod 7", "e^{e^{e^{e}}}",
        # expansions and symbolic work
        "(x+1)^{99}(x-1)^{99}", "(x+y+z+1)^{60}", "(a+b)^{50}", "\\left(\\frac{x+1}{x-1}\\right)^{40}", "(1+\\sqrt{2})^{200}",
        "\\prod_{k=1}^{9999} k^{k}", "\\sum_{k=1}^{10^{9}} k^{3}", "\\sum_{n=1}^{\\infty} \\frac{1}{n^{2}}", "\\lim_{x \\to 0} \\frac{\\sin x}{x}",
        # matrices and determinants
        "\\begin{pmatrix} x & 1 & 2 \\\\ 3 & y & 4 \\\\ 5 & 6 & z \\end{pmatrix}^{40}",
        "\\det\\begin{pmatrix} a & b & c & d \\\\ e & f & g & h \\\\ i & j & k & l \\\\ m & n & o & p \\end{pmatrix}",
        "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}", "\\begin{vmatrix} x & y \\\\ z & w \\end{vmatrix}",
        # integrals and derivatives
        "\\int_0^1 e^{x^2}\\sin(x^3)\\,dx", "\\int_{-\\infty}^{\\infty} e^{-x^2}\\,dx", "\\iint_D xy\\,dA", "\\frac{d}{dx} x^{x^{x}}",
        "\\oint_C \\frac{dz}{z}", "\\frac{\\partial^{2}}{\\partial x^{2}} e^{x y}",
        # deep nesting and size
        "{" * 40 + "1" + "}" * 40, "\\frac{" * 25 + "1" + "}{2}" * 25, "\\sqrt{" * 35 + "2" + "}" * 35, "(" * 500 + "1" + ")" * 500,
        "1+" * 600 + "1", "x" * 5000, "\\frac{1}{2}" * 200, "1" * 900, "9" * 5000,
        # shapes that parse but should not match
        "\\frac{1}{2} \\text{ or } \\frac{1}{3}", "\\{\\frac{1}{2}, \\frac{1}{3}\\}", "0.5, 0.6", "\\pm\\frac{1}{2}", "x \\neq \\frac{1}{2}",
        "[0, 1]", "(0, 1]", "x^2 + 1 = 0", "\\infty", "-\\infty", "\\emptyset", "\\mathbb{R}", "i", "\\sqrt{-1}", "0/0", "\\frac{1}{0}",
        "\\log(0)", "\\tan(\\pi/2)", "NaN", "\\sin^{-1}(2)", "1e999", "-1e999", "x^{x^{x^{x}}}", "\\zeta(3)", "\\sqrt[3]{2}",
        "\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2", "0.866", "\\cos(\\pi/6)", "2\\sin(\\pi/3)/2", "\\frac{2}{4}", "0.5000001", "\\frac{1}{2}+0",
        "\\frac{x^2-1}{x-1}", "x+1", "(x+1)^2", "x^2+2x+1", "\\boxed{1}", "\\text{one half}", "half", "½", "\u0000", "\\\\\\\\\\\\",
        "}{", "\\frac{}{}", "^^^^", "_{_{_{}}}", "\\left(\\right)", "\\begin{pmatrix}", "\\end{pmatrix}", "$$$$", "\\(\\)", "ab" * 400,
    ]
    whole = [
        "a" * 1_000_000, "<think>" + "x" * 1_000_000 + "</think><answer>\\boxed{1}</answer>",
        "<think>r</think><answer>" + "\\boxed{1}" * 5000 + "</answer>", "\\boxed{" * 20_000, "{" * 100_000,
        "<think>r</think><answer>\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}</answer>",
        "<think>" * 5000 + "</think><answer>\\boxed{1}</answer>", "<answer>" * 5000, "\x00" * 100_000,
        "<think>r</think><answer>" + "\\boxed{" * 3000 + "1" + "}" * 3000 + "</answer>",
    ]
    return [W(b) for b in box] + whole


GOLDS = [
    Sample(id="e1", task="general/algebra", question="q", answer="\\frac{1}{2}", answer_type="expression"),
    Sample(id="e2", task="general/algebra", question="q", answer="x^2+2x+1", answer_type="expression"),
    Sample(id="e3", task="general/geometry", question="q", answer="\\frac{\\sqrt{3}}{2}", answer_type="expression"),
    Sample(id="n1", task="general/arithmetic", question="q", answer="12", answer_type="number"),
    Sample(id="s1", task="spatial/abs_distance", question="q", answer="3.2", answer_type="number"),
    Sample(id="c1", task="general/geometry", question="q", answer="B", answer_type="choice", choices=["1", "2", "3", "4"]),
    Sample(id="t1", task="spatial/direction", question="q", answer="left", answer_type="text"),
]


def router(timeout_s: float, workers: int) -> RewardRouter:
    routes = [
        {"task": "spatial/*", "answer_type": "number", "weights": {"format": 0.5, "ednm": 1.0}, "accuracy": "ednm"},
        {"task": "*", "answer_type": "choice", "weights": {"format": 0.5, "choice": 1.0}, "accuracy": "choice"},
        {"task": "*", "answer_type": "number", "weights": {"format": 0.5, "number": 1.0}, "accuracy": "number"},
        {"task": "*", "answer_type": "expression", "weights": {"format": 0.5, "expression": 1.0}, "accuracy": "expression"},
        {"task": "*", "answer_type": "text", "weights": {"format": 0.5, "text": 1.0}, "accuracy": "text"},
    ]
    return RewardRouter({"expression": {"timeout_s": timeout_s, "workers": workers}}, routes)


EXPR_GOLDS = ["\\frac{1}{2}", "x^2+2x+1", "\\frac{\\sqrt{3}}{2}", "2\\pi", "\\sqrt{2}", "\\frac{3}{4}", "x+1", "2x-3", "\\frac{\\pi}{3}", "3\\sqrt{3}",
              "\\frac{x}{2}", "x^2-1", "\\frac{5}{8}", "4\\pi", "\\frac{1}{x}", "2^{10}"]


def rollout_batch(rng: random.Random, right: float = 0.4, wrong: float = 0.4) -> tuple[list[str], list[Sample]]:
    """16 expression prompts (16 golds) x G=16, every response distinct: a share `right` of correct
    answers rewritten (never the gold's own string), `wrong` of wrong answers, the rest adversarial."""
    advs = adversarial()
    texts, samples = [], []
    for p, gold in enumerate(EXPR_GOLDS):
        sample = Sample(id=f"b{p}", task="general/algebra", question="q", answer=gold, answer_type="expression")
        for g in range(16):
            k, u = p * 16 + g, rng.random()
            if u < right:
                forms = [f"({gold}) + {k} - {k}", f"\\frac{{{k + 2}({gold})}}{{{k + 2}}}", f"{k + 1}({gold}) - {k}({gold})", f"({gold}) \\cdot \\frac{{{k + 3}}}{{{k + 3}}}"]
                texts.append(W(forms[g % 4]))
            elif u < right + wrong:
                texts.append(W(f"({gold}) + \\frac{{{k + 1}}}{{{k + 7}}}"))
            else:
                texts.append(advs[k % len(advs)].replace("step by step", f"step {k}"))
            samples.append(sample)
    return texts, samples


def typical_batch(rng: random.Random) -> tuple[list[str], list[Sample]]:
    """16 prompts x G=16 as a sampled policy answers them: the task mix of the embedded data (6 spatial
    numbers, 4 choices, 2 numbers, 2 expressions, 2 texts); per prompt, half right in one of 3 forms,
    35% wrong (one of 4 values), 15% malformed or adversarial, so answers repeat within a group."""
    advs = adversarial()
    kinds = ["spatial"] * 6 + ["choice"] * 4 + ["number"] * 2 + ["expression"] * 2 + ["text"] * 2
    texts, samples = [], []
    for p, kind in enumerate(kinds):
        if kind == "spatial":
            gold = f"{rng.uniform(0.5, 9):.1f}"
            sample = Sample(id=f"t{p}", task="spatial/abs_distance", question="q", answer=gold, answer_type="number")
            right, wrong = [gold, f"{gold} m", f"\\text{{{gold} meters}}"], [f"{float(gold) * f:.1f}" for f in (0.5, 0.8, 1.3, 2.0)]
        elif kind == "choice":
            sample = Sample(id=f"t{p}", task="general/geometry", question="q", answer="B", answer_type="choice", choices=["1.5", "2.5", "3.5", "4.5"])
            right, wrong = ["B", "(B)", "B. 2.5"], ["A", "C", "D", "3.5"]
        elif kind == "number":
            sample = Sample(id=f"t{p}", task="general/arithmetic", question="q", answer=str(12 + p), answer_type="number")
            right, wrong = [str(12 + p), f"{12 + p}.0", f"{12 + p} items"], [str(11 + p), str(13 + p), str(2 * p), "0"]
        elif kind == "expression":
            gold = EXPR_GOLDS[p % len(EXPR_GOLDS)]
            sample = Sample(id=f"t{p}", task="general/algebra", question="q", answer=gold, answer_type="expression")
            right, wrong = [gold, f"({gold}) + 0", f"\\frac{{2({gold})}}{{2}}"], [f"({gold}) + {k}" for k in (1, 2, 3, 4)]
        else:
            sample = Sample(id=f"t{p}", task="spatial/direction", question="q", answer="left", answer_type="text")
            right, wrong = ["left", "Left", "\\text{left}"], ["right", "front", "back", "up"]
        for g in range(16):
            u = rng.random()
            texts.append(W(rng.choice(right)) if u < 0.5 else W(rng.choice(wrong)) if u < 0.85 else advs[rng.randrange(len(advs))])
            samples.append(sample)
    return texts, samples


def time_batch(r: RewardRouter, workers: int, texts: list[str], samples: list[Sample]) -> tuple[float, float, int]:
    """Seconds to score the batch on a fresh pool (started, warmed up, empty caches), mean accuracy, pairs sent to workers."""
    from m2r.rewards import functions

    functions.verify_pool(workers).close()
    functions._POOLS.pop(workers, None)
    r.score(W("0.5"), GOLDS[0])  # a new pool: its start-up is not timed (a run pays it once)
    pool = functions.verify_pool(workers)
    pool.clear_cache()
    sent = pool.sent
    t0 = time.perf_counter()
    scored = r.score_batch(texts, samples)
    return time.perf_counter() - t0, sum(x.accuracy for x in scored) / len(scored), pool.sent - sent


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main() -> int:
    timeout_s = float(os.environ.get("M2R_REWARD_TIMEOUT_S", "2.0"))
    workers = int(os.environ.get("M2R_REWARD_WORKERS", "2"))
    r = router(timeout_s, workers)
    r.score(W("0.5"), GOLDS[0])  # start the workers (spawn + sympy import), as a run's first expression answer does
    from m2r.rewards.functions import verify_pool

    pool = verify_pool(workers)
    times, slowest = [], (0.0, "")
    for text in adversarial():
        for s in GOLDS:
            t0 = time.perf_counter()
            r.score(text, s)
            dt = time.perf_counter() - t0
            times.append(dt)
            answer = text[text.find("\\boxed{") + 7 : text.rfind("}.</answer>")] if text.startswith("<think>Let me") else text
            slowest = max(slowest, (dt, f"`{answer[:60]}` against `{s.answer}`"))
    per_call = {"calls": len(times), "p50_ms": 1e3 * statistics.median(times), "p99_ms": 1e3 * percentile(times, 99),
                "max_ms": 1e3 * max(times), "timeouts": pool.timeouts, "slowest": slowest[1]}
    per_call["to_math_verify"] = pool.sent - 1
    typ_s, typ_acc, typ_sent = time_batch(r, workers, *typical_batch(random.Random(0)))
    batch_s, batch_acc, batch_sent = time_batch(r, workers, *rollout_batch(random.Random(0)))
    worst_s, worst_acc, worst_sent = time_batch(r, workers, *rollout_batch(random.Random(1), right=1.0, wrong=0.0))
    batch = {"responses": 256, "typical_seconds": typ_s, "typical_accuracy": typ_acc, "typical_to_math_verify": typ_sent, "seconds": batch_s, "mean_accuracy": batch_acc, "to_math_verify": batch_sent,
             "all_right_rewritten_seconds": worst_s, "all_right_rewritten_accuracy": worst_acc, "all_right_to_math_verify": worst_sent}
    ok = per_call["p99_ms"] < 50 and per_call["max_ms"] < 1e3 * (timeout_s + 0.25) and max(typ_s, batch_s, worst_s) < 1.0
    row = (f"| {os.cpu_count()}-core CPU | {workers} | {timeout_s:g} s | {per_call['calls']} ({per_call['to_math_verify']}) | {per_call['p50_ms']:.2f} | "
           f"{per_call['p99_ms']:.1f} | {per_call['max_ms']:.0f} | {per_call['timeouts']} | {typ_s:.3f} ({typ_sent}) | {batch_s:.3f} ({batch_sent}) | {worst_s:.3f} ({worst_sent}) | "
           f"{'yes' if ok else 'NO'} |")
    text = "\n".join([
        f"`python benchmarks/reward_latency.py` ({time.strftime('%Y-%m-%d')}); slowest call: {per_call['slowest']}. In parentheses: calls that reached "
        "math-verify (the rest were settled by extraction, the cheap bounds, an exact match or the cache). Batches of 256 on fresh workers "
        "and caches, the 1 s bound applying to each: typical (`typical_batch`: the embedded task mix, answers repeating within groups); "
        "distinct expressions (16 expression prompts, 40% right answers rewritten, 40% wrong, 20% adversarial, all distinct); all-right "
        "(256 distinct rewritten right expressions). Simple LaTeX is decided in-process by `m2r.rewards.fast_latex` (checked "
        "against math-verify); a constant with a root or pi that agrees everywhere is built from the same parse and confirmed by "
        "sympy in a worker (1-2 ms); every other distinct expression costs a worker one latex2sympy parse (7-25 ms).", "",
        "| machine | workers | timeout | calls (to math-verify) | p50 ms | p99 ms | max ms | timeouts | typical batch s | distinct-expression batch s "
        "| all-right batch s | bounds met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", row])
    print(text)
    print(json.dumps({"per_call": per_call, "batch": batch}, indent=1))
    readme = ROOT / "benchmarks" / "README.md"
    body = readme.read_text()
    if START in body:
        body = body[: body.index(START)] + f"{START}\n{text}\n{END}" + body[body.index(END) + len(END):]
        readme.write_text(body)
    pool.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
