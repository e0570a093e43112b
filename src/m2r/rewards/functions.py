"""Reward functions: each a pure function of (response text, sample) returning a float in [0, 1]
(times its own scale where it has one), total and bounded: any string returns within bounded
time and never raises; an empty answer never scores.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import re
import threading
from typing import Any

from m2r.data.schema import LETTERS, Sample
from m2r.rewards.extract import extract_answer, last_boxed, parse_number

_FORMAT_STRICT = re.compile(r"\s*<think>(?P<think>.+?)</think>\s*<answer>(?P<answer>.+?)</answer>\s*", re.S)


def format_reward(response: str, sample: Sample | None = None, strict: bool = True) -> float:
    """1.0 for the M2 response format: `<think>...</think><answer>...</answer>` and nothing else
    around them, one of each tag, both non-empty; `strict` also requires a non-empty `\\boxed{}`
    inside the answer. 0.0 otherwise."""
    if not isinstance(response, str) or len(response) > 200_000:
        return 0.0
    if any(response.count(t) != 1 for t in ("<think>", "</think>", "<answer>", "</answer>")):
        return 0.0
    m = _FORMAT_STRICT.fullmatch(response)
    if not m or not m.group("think").strip() or not m.group("answer").strip():
        return 0.0
    if strict:
        boxed = last_boxed(m.group("answer"))
        if boxed is None or not boxed.strip():
            return 0.0
    return 1.0


def _letters_in(answer: str, n_choices: int) -> set[str]:
    valid = LETTERS[:n_choices]
    s = answer.strip()
    m = re.fullmatch(r"\(?\s*([A-Z])\s*\)?\s*[.:)]?", s)
    if m:
        return {m.group(1)} if m.group(1) in valid else set()
    m = re.fullmatch(r"(?:option|choice)\s*\(?([A-Z])\)?(?:[.:)]\s*.*)?", s, re.I | re.S)
    if m:
        return {m.group(1).upper()} & set(valid)
    m = re.match(r"\(?([A-Z])[.:)]\s+\S", s)  # "B. 22.4"
    if m:
        return {m.group(1)} & set(valid)
    # Standalone capital letters in a short answer ("A and C", "A, B"): several means several.
    return set(re.findall(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", s)) & set(valid) if len(s) <= 40 else set()


def choice_reward(response: str, sample: Sample) -> float:
    """1.0 when the answer names the correct option, by letter or by the option's exact text;
    0.0 for the wrong option, no answer, or an answer that names several options."""
    ans = extract_answer(response)
    if ans is None or not sample.choices:
        return 0.0
    letters = _letters_in(ans, len(sample.choices))
    if not letters:
        norm = ans.strip().strip(".").lower()
        letters = {LETTERS[i] for i, c in enumerate(sample.choices) if c.strip().lower() == norm}
    return 1.0 if letters == {sample.answer.strip()} else 0.0


def _gold_number(sample: Sample) -> float | None:
    if sample.answer_type == "choice" and sample.choices:
        idx = LETTERS.find(sample.answer.strip())
        return parse_number(sample.choices[idx]) if 0 <= idx < len(sample.choices) else None
    return parse_number(sample.answer)


def number_reward(response: str, sample: Sample, rel_tol: float = 0.0, abs_tol: float = 1e-6) -> float:
    """1.0 when the extracted number matches the ground truth within `rel_tol` / `abs_tol`
    (`math.isclose`); with the defaults, an exact numeric match."""
    x, gt = parse_number(extract_answer(response)), _gold_number(sample)
    if x is None or gt is None:
        return 0.0
    return 1.0 if math.isclose(x, gt, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


def ednm_reward(response: str, sample: Sample, gamma: float = 1.0, lam: float = 2.0, eps: float = 1e-6) -> float:
    """Exponential-decay numeric matching (paper Eq. 9): gamma * exp(-lam * |x - x_gt| / (|x_gt| + eps)).
    A smooth reward for numeric estimates (distances, sizes, areas): 1 at the exact value,
    exp(-lam) at 100% relative error. No parsable number scores 0."""
    x, gt = parse_number(extract_answer(response)), _gold_number(sample)
    if x is None or gt is None:
        return 0.0
    rel = abs(x - gt) / (abs(gt) + eps)
    return float(gamma * math.exp(-lam * rel)) if rel < 1e6 else 0.0


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\\text\{([^{}]*)\}", r"\1", s)).strip().strip(".").lower()


def text_reward(response: str, sample: Sample) -> float:
    """1.0 when the extracted answer equals the ground truth after whitespace/case normalisation."""
    ans = extract_answer(response)
    return 1.0 if ans is not None and _norm_text(ans) == _norm_text(sample.answer) else 0.0


# ------------------------------------------------------------------------------------------------
# math-verify in a worker process: its own timeouts use signal.alarm (main thread only), and a
# pathological answer can keep sympy busy for seconds. A timed-out worker is killed and replaced.

MAX_EXPR_CHARS = 1000
MAX_BRACE_DEPTH = 30


def _verify_worker(conn) -> None:
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call without its own timeouts
    from math_verify import parse, verify

    conn.send("ready")
    while True:
        gold, pred = conn.recv()
        try:
            g = parse(gold if "\\boxed" in gold or "$" in gold else f"${gold}$", parsing_timeout=None)
            p = parse(pred if "\\boxed" in pred or "$" in pred else f"${pred}$", parsing_timeout=None)
            ok = bool(g) and bool(p) and verify(g, p, timeout_seconds=None)
        except Exception:
            ok = False
        conn.send(ok)


class _Verifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_verify_worker, args=(child,), daemon=True)
        self._proc.start()
        # Start-up (spawn + importing sympy) is waited for apart from the per-answer budget.
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            raise OSError("math-verify worker did not start")

    def _reset(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(1)
        self._proc = None

    def __call__(self, gold: str, pred: str, timeout_s: float) -> bool:
        with self._lock:
            try:
                if self._proc is None or not self._proc.is_alive():
                    self._start()
                self._conn.send((gold, pred))
                if self._conn.poll(timeout_s):
                    return bool(self._conn.recv())
            except (OSError, EOFError):  # the worker died (killed, or could not start)
                pass
            self._reset()
            return False


_VERIFY = _Verifier()


def _depth(s: str) -> int:
    d = m = 0
    for c in s:
        d += (c == "{") - (c == "}")
        m = max(m, d)
    return m


_POWER_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\*\*[^*]*\*\*")
_BIG_FACTORIAL = re.compile(r"\d{4,}\s*!")


def _too_costly(ans: str) -> bool:
    """Answers that make sympy work for seconds and are never a benchmark's gold: power towers, huge factorials."""
    return len(ans) > MAX_EXPR_CHARS or _depth(ans) > MAX_BRACE_DEPTH or bool(_POWER_TOWER.search(ans)) or bool(_BIG_FACTORIAL.search(ans))


def expression_reward(response: str, sample: Sample, timeout_s: float = 2.0) -> float:
    """1.0 when math-verify finds the answer equivalent to the ground truth (gold first),
    within `timeout_s` (in a worker process, so it works from any thread); 0.0 otherwise.
    Answers over 1000 characters, nested over 30 braces deep, power towers and factorials of
    4-digit numbers score 0 without parsing."""
    ans = extract_answer(response)
    if ans is None or _too_costly(ans):
        return 0.0
    gold = str(sample.answer)
    if ans.strip() == gold.strip():
        return 1.0
    return 1.0 if _VERIFY(gold, ans, timeout_s) else 0.0


FUNCTIONS: dict[str, Any] = {
    "format": format_reward,
    "choice": choice_reward,
    "number": number_reward,
    "ednm": ednm_reward,
    "expression": expression_reward,
    "text": text_reward,
}
