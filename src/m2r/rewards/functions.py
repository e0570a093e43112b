"""Reward functions: each a pure function of (response text, sample) returning a float in [0, 1]
(times its own scale where it has one), total and bounded: any string returns within bounded
time and never raises; an empty answer never scores.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import re
import threading
import time
from collections import OrderedDict
from fractions import Fraction
from typing import Any

from m2r.data.schema import LETTERS, Sample
from m2r.rewards.fast_latex import DIGITS, decide, fast_verdict, sample_points
from m2r.rewards.extract import WRAPPER, answer_content, last_boxed, parse_number, strict_number, unwrap_latex

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
    """Lenient: the option letters an answer names (benchmark-style; several means several)."""
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


def _norm_option(s: str) -> str:
    return re.sub(r"\s+", " ", unwrap_latex(s)).strip().rstrip(".").strip().lower()


def strict_choice(answer: str, choices: list[str]) -> str | None:
    """The one option a strict answer names: its letter (`B`, `(B)`, `B.`, `option B`), its letter
    with its own text (`B. 22.4`), or its exact text; None for anything else (a wrong text after
    the letter, several letters, a negation, a hedge)."""
    s = unwrap_latex(answer).strip().rstrip(".").strip()
    valid = LETTERS[: len(choices)]
    hits = [LETTERS[i] for i, c in enumerate(choices) if _norm_option(c) == _norm_option(s)]
    m = re.fullmatch(r"(?:(?i:option|choice)\s*)?\(?\s*([A-Za-z])\s*\)?", s)
    if m and not (m.group(1).islower() and hits):  # a lower-case letter that is an option's text is that option
        return m.group(1).upper() if m.group(1).upper() in valid else None
    m = re.fullmatch(r"\(?([A-Za-z])[.:)]\s*(.+)", s, re.S) or re.fullmatch(r"([A-Za-z])\s*\((.+)\)", s, re.S)  # B. 22.4 | B (22.4)
    if m and not hits:
        i = valid.find(m.group(1).upper())
        return m.group(1).upper() if i >= 0 and _norm_option(m.group(2)) == _norm_option(choices[i]) else None
    return hits[0] if len(hits) == 1 else None


def choice_reward(response: str, sample: Sample, extraction: str = "strict") -> float:
    """1.0 when the answer names the correct option, by letter or by the option's exact text;
    0.0 for the wrong option, no answer, or an answer that names several options, negates or
    hedges. `extraction` (strict | tagged | lenient): see `m2r.rewards.extract`."""
    ans = answer_content(response, extraction)
    if ans is None or not sample.choices:
        return 0.0
    if extraction != "lenient":
        return 1.0 if strict_choice(ans, sample.choices) == sample.answer.strip() else 0.0
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


def _answer_number(response: str, extraction: str) -> float | None:
    ans = answer_content(response, extraction)
    return parse_number(ans) if extraction == "lenient" else strict_number(ans)


def number_reward(response: str, sample: Sample, rel_tol: float = 0.0, abs_tol: float = 1e-6, extraction: str = "strict") -> float:
    """1.0 when the answer is one number (a unit allowed, nothing else: see `strict_number`) that
    matches the ground truth within `rel_tol` / `abs_tol` (`math.isclose`); with the defaults, an
    exact numeric match."""
    x, gt = _answer_number(response, extraction), _gold_number(sample)
    if x is None or gt is None:
        return 0.0
    return 1.0 if math.isclose(x, gt, rel_tol=rel_tol, abs_tol=abs_tol) else 0.0


def ednm_reward(response: str, sample: Sample, gamma: float = 1.0, lam: float = 2.0, eps: float = 1e-6, extraction: str = "strict") -> float:
    """Exponential-decay numeric matching (paper Eq. 9): gamma * exp(-lam * |x - x_gt| / (|x_gt| + eps)).
    A smooth reward for numeric estimates (distances, sizes, areas): 1 at the exact value,
    exp(-lam) at 100% relative error. No answer that is one number scores 0."""
    x, gt = _answer_number(response, extraction), _gold_number(sample)
    if x is None or gt is None:
        return 0.0
    rel = abs(x - gt) / (abs(gt) + eps)
    return float(gamma * math.exp(-lam * rel)) if rel < 1e6 else 0.0


def _norm_text(s: str) -> str:
    return re.sub(r"\s+", " ", unwrap_latex(s)).strip().strip(".").lower()


def text_reward(response: str, sample: Sample, extraction: str = "strict") -> float:
    """1.0 when the answer equals the ground truth after whitespace/case normalisation."""
    ans = answer_content(response, extraction)
    return 1.0 if ans is not None and _norm_text(ans) == _norm_text(sample.answer) else 0.0


# ------------------------------------------------------------------------------------------------
# math-verify in a pool of worker processes: its own timeouts use signal.alarm (main thread only),
# and a pathological answer can keep sympy busy for seconds. Cheap bounds reject the known costly
# shapes before any parsing; a worker past its budget is killed and replaced in the background
# while the others go on; equal (gold, answer) pairs are verified once.

MAX_EXPR_CHARS = 150  # answers longer than this and 3x their gold are not parsed (800 letters: a 2 s sympy product)
MAX_BRACE_DEPTH = 30


_WARMUP = [("\\frac{1}{2}", "0.5"), ("x^2+2x+1", "(x+1)^2"), ("(0, 1]", "[0, 1)"), ("\\{1, 2\\}", "\\{2, 1\\}"), ("2", "x = 2"),
           ("x^2+1=0", "x^2=-1"), ("\\frac{1}{2}", "\\sin(\\pi/6)"), ("\\frac{\\sqrt{3}}{2}", "\\sqrt{3}/2"), ("\\log(2)", "0.693"),
           ("1", "\\tan(\\pi/2)"), ("1", "\\sin^{-1}(2)"), ("1", "1e99"), ("1", "\\sqrt[3]{2}"), ("\\frac{1}{2}", "\\frac{x^2-1}{x-1}"), ("1", "half")]


def _branches(e) -> bool:
    """Whether a sympy expression may agree with another at the sample points without being equal:
    a non-analytic function of a symbol (Abs, sign, floor, Min, Piecewise, ...) or a root or
    fractional power of a symbol-dependent base (|x-5| and sqrt((x-5)^2) are 5-x near 0)."""
    import sympy

    analytic = (sympy.sin, sympy.cos, sympy.tan, sympy.cot, sympy.sec, sympy.csc, sympy.exp, sympy.log, sympy.asin, sympy.acos, sympy.atan,
                sympy.sinh, sympy.cosh, sympy.tanh)
    for f in e.atoms(sympy.Function):
        if f.free_symbols and not isinstance(f, analytic):
            return True
    return any(p.base.free_symbols and not p.exp.is_integer for p in e.atoms(sympy.Pow))


def _extreme(e) -> bool:
    """Whether a constant part of a sympy expression lies outside 1e-15..1e15 in magnitude."""
    import sympy

    for sub in sympy.preorder_traversal(e):
        if isinstance(sub, sympy.Expr) and sub.is_number:
            v = abs(complex(sub.evalf(20)))
            if v != 0 and not 1e-15 <= v <= 1e15:
                return True
    return False


def _numeric_verdict(gold: list, pred: list) -> bool | None:
    """A verdict without sympy's simplification (15-100 ms), or None when in doubt (then math-verify
    decides). Both first parses must be plain expressions over the same one-letter symbols (not e or
    E; no relation, set or interval). False when one is a value and the other a collection of several
    values, or when they differ at a random point (values of either sign) by over 1e-9 relative when
    both are exact (no decimals), over 1% otherwise; True when both are exact and agree to 1e-30 at
    every point (`fast_latex.decide`, 50-digit evaluation at `fast_latex.sample_points`) and, both
    being rational functions, are equal in exact rational arithmetic at those points; None when a
    root or constant stands in the way of an exact check."""
    import mpmath
    import sympy

    def many(x) -> bool:  # a collection of two or more values: never equal to one value
        return (isinstance(x, (sympy.FiniteSet, sympy.Tuple)) and len(x) >= 2) or (isinstance(x, sympy.Interval) and x.measure != 0)

    try:
        g, p = gold[0], pred[0]
        plain = [isinstance(x, sympy.Expr) and not isinstance(x, sympy.Tuple) for x in (g, p)]
        if (plain[0] and many(p)) or (plain[1] and many(g)):
            return False
        if not all(plain):
            return None
        syms = g.free_symbols | p.free_symbols
        if g.free_symbols != p.free_symbols or len(syms) > 6 or any(len(x.name) != 1 or x.name in "eE" for x in syms):
            return None  # math-verify's symbol rules (case, joined letters, e) are not numeric
        if _extreme(g) or _extreme(p):
            return None  # 3+10^{-31}: a difference under the 1e-30 closeness; math-verify compares it exactly
        if isinstance(g, sympy.Symbol) or isinstance(p, sympy.Symbol):
            return None  # math-verify compares a lone letter as a letter: `x` is not `2x-x` to it
        exact = not (g.atoms(sympy.Float) or p.atoms(sympy.Float))

        def value(e, at):
            re_, im_ = e.evalf(DIGITS, subs=at).as_real_imag()
            return mpmath.mpc(mpmath.mpf(str(re_)), mpmath.mpf(str(im_)))  # raises unless a number

        with mpmath.workdps(DIGITS):
            values = []
            for point in sample_points([x.name for x in syms]):
                at = {x: sympy.Float(point[x.name], DIGITS) for x in syms}
                values.append((value(g, at), value(p, at)))
            verdict = decide(values, exact, not (_branches(g) or _branches(p)))
        if not verdict:
            return verdict
        # Agreement to 1e-30 is not equality ((1+10^{-15})(1-10^{-15}) is not 1): proven exactly, or math-verify decides.
        if not all(_rational_function(x) for x in (g, p)):
            return None
        for point in sample_points([x.name for x in syms]):
            at = {x: sympy.Rational(Fraction(point[x.name])) for x in syms}
            d = g.subs(at) - p.subs(at)  # a Rational: exact
            if not d.is_Rational:
                return None
            if d != 0:
                return False
        return True
    except Exception:
        return None


def _rational_function(e) -> bool:
    """A rational function with rational coefficients: exact numbers, symbols, + - * / and integer powers."""
    import sympy

    for node in sympy.preorder_traversal(e):  # only these node types: Max, Min, Abs, functions and constants are not
        if isinstance(node, sympy.Pow):
            if not node.exp.is_Integer:
                return False
        elif not isinstance(node, (sympy.Add, sympy.Mul, sympy.Symbol, sympy.Rational)):
            return False
    return True


def judge(g: list, p: list) -> bool:
    """The worker's verdict on two parses (math-verify's, or `fast_latex.constant_sympy`'s in its shape):
    the numeric shortcut when it is sure, else math-verify's `verify`."""
    from math_verify import verify

    fast = _numeric_verdict(g, p) if g and p else False
    return bool(fast if fast is not None else verify(g, p, timeout_seconds=None))


def _verify_worker(conn) -> None:
    import functools
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # it warns on every call without its own timeouts
    from dataclasses import replace

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # No unit stripping: math-verify deletes trailing "unit" words (s, t, h, m, am, ...) after a digit, brace or space, and
    # everything from a `\text{`/`\mathrm{` to the end, so `3x+5t` was 3x+5 and `4+\text{1}` was 4. A strict answer with a
    # word in `\text{}` is refused before parsing (`_one_expression`), so nothing a gold needs is lost.
    latex = LatexExtractionConfig()
    latex_only = [replace(latex, normalization_config=replace(latex.normalization_config, units=False))]
    config = [*latex_only, ExprExtractionConfig()]

    from m2r.rewards.fast_latex import constant_sympy

    @functools.lru_cache(maxsize=1024)
    def parsed(s: str, strict: bool = False):  # a group's G answers share their gold
        value = constant_sympy(s)  # a constant with a root or pi: the value latex2sympy would read, without its parse
        if value is not None:
            return [value, s]  # the shape of math-verify's parse: the value, then the string
        # A strict answer is read as LaTeX or not at all: math-verify's plain-expression fallback takes the last number of
        # what latex2sympy cannot read (`7\circ 9`, `\approx 9`, `7 \% 9` were 9).
        return parse(s if "$" in s else f"${s}$", extraction_config=latex_only if strict else config, parsing_timeout=None)

    for gold, pred in _WARMUP:  # sympy loads much of itself lazily: the first interval, set or trig call costs 100-400 ms
        try:
            _numeric_verdict(parsed(gold), parsed(pred))
            verify(parsed(gold), parsed(pred), timeout_seconds=None)
        except Exception:
            pass
    conn.send("ready")
    while True:
        gold, pred, *mode = conn.recv()  # (gold, answer[, strict]); a strict answer is parsed as LaTeX only
        try:
            ok = judge(parsed(gold), parsed(pred, bool(mode and mode[0])))
        except Exception:
            ok = False
        conn.send(bool(ok))


class _Worker:
    def __init__(self, ctx) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_verify_worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.started = time.monotonic()
        self.job: tuple[tuple[str, str], float] | None = None  # (pair, deadline)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join(1)
        self.conn.close()


class VerifyPool:
    """`workers` math-verify processes that score (gold, answer) pairs concurrently, each pair
    within `timeout_s` of being handed to a worker (False past it); thread-safe."""

    START_TIMEOUT_S = 120.0  # spawning and importing sympy, waited for apart from the per-pair budget

    def __init__(self, workers: int = 2, cache_size: int = 8192) -> None:
        if workers < 1:
            raise ValueError(f"reward.expression.workers={workers}: needs at least 1 math-verify worker process")
        self.n = workers
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._cache_size = cache_size
        self.timeouts = 0  # pairs that ran out of time (each cost a worker)
        self.sent = 0  # pairs handed to a worker (not answered from the cache)
        self._start_failures = 0

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self._workers[self._workers.index(w)] = _Worker(self._ctx)

    def verify(self, pairs: list[tuple[str, str]], timeout_s: float) -> list[bool]:
        with self._lock:
            done: dict[tuple[str, str], bool] = {}
            unique = list(dict.fromkeys(pairs))
            for q in unique:
                if q in self._cache:
                    done[q] = self._cache[q]
                    self._cache.move_to_end(q)  # least recently used goes first
            todo = [q for q in unique if q not in done]
            fresh: set[tuple[str, str]] = set()  # verdicts worth caching (not timeouts or crashes)
            while len(self._workers) < self.n:
                self._workers.append(_Worker(self._ctx))
            while todo or any(w.job for w in self._workers):
                now = time.monotonic()
                for w in self._workers:
                    if w.ready and w.job is None and todo:
                        q = todo.pop()
                        try:
                            w.conn.send(q)
                            w.job = (q, time.monotonic() + timeout_s)
                            self.sent += 1
                        except (OSError, ValueError):
                            todo.append(q)
                            self._replace(w)
                busy = [w.job[1] for w in self._workers if w.job]
                starting = [w.started + self.START_TIMEOUT_S for w in self._workers if not w.ready]
                if not busy and not starting:
                    continue
                wait_s = max(0.0, min(busy + starting) - now)
                for conn in mp_connection.wait([w.conn for w in self._workers if w.job or not w.ready], wait_s):
                    w = next(w for w in self._workers if w.conn is conn)
                    try:
                        msg = conn.recv()
                    except (EOFError, OSError):  # the worker died: its pair scores False, a fresh worker takes its place
                        if not w.ready:
                            self._start_failures += 1
                            if self._start_failures > 3:
                                w.kill()
                                self._workers.remove(w)
                                raise OSError("math-verify workers die while starting (is math-verify installed? a spawned process re-imports "
                                              "the main module: run from a file, not stdin)") from None
                        if w.job:
                            done[w.job[0]] = False
                        self._replace(w)
                        continue
                    if msg == "ready":
                        w.ready = True
                        self._start_failures = 0
                    elif w.job:
                        done[w.job[0]] = bool(msg)
                        fresh.add(w.job[0])
                        w.job = None
                now = time.monotonic()
                for w in list(self._workers):
                    if w.job and now >= w.job[1]:
                        done[w.job[0]] = False
                        self.timeouts += 1
                        self._replace(w)  # the new one starts in the background; the others go on
                    elif not w.ready and now >= w.started + self.START_TIMEOUT_S:
                        w.kill()
                        raise OSError(f"a math-verify worker did not start within {self.START_TIMEOUT_S:.0f} s")
            for q in fresh:
                self._cache[q] = done[q]
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            return [done[q] for q in pairs]

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        with self._lock:
            for w in self._workers:
                w.kill()
            self._workers = []


_POOLS: dict[int, VerifyPool] = {}


def verify_pool(workers: int = 2) -> VerifyPool:
    """This process's pool of `workers` math-verify processes (made on first use)."""
    if workers not in _POOLS:
        _POOLS[workers] = VerifyPool(workers)
    return _POOLS[workers]


def brace_depth(s: str) -> int:
    """The deepest `{` nesting in `s`."""
    d = m = 0
    for c in s:
        d += (c == "{") - (c == "}")
        m = max(m, d)
    return m


# Shapes that can keep sympy busy for seconds (measured: `(x+1)^{99}(x-1)^{99}` 2.2 s, a symbolic
# 3x3 matrix to the 40th and `\int_0^1 e^{x^2}\sin(x^3)dx` over 5 s). An answer with one of them is
# scored 0 without parsing unless its gold has the same shape (then it goes to the timed worker).
COSTLY_SHAPES = {
    "power_tower": re.compile(r"\d\s*(?:\^|\*\*)\s*\{?\s*\(?\s*\d+\s*(?:\^|\*\*)|\^\s*\{[^{}]*\^\s*\{[^{}]*\^"),  # 9^{9^{9}}, e^{e^{e^{e}}} (e^{x^2} is cheap)
    "big_factorial": re.compile(r"\d{3,}\s*!|\)\s*!"),
    "big_exponent": re.compile(r"(?:\^|\*\*)\s*\{?\s*[-+]?\s*\d{3,}"),
    "group_power": re.compile(r"[)\]}|]\s*(?:\^|\*\*)\s*\{?\s*[-+]?\s*\d{2,}"),  # (x+1)^{99}: expansions
    "matrix": re.compile(r"\\begin\s*\{\s*[a-zA-Z]*matrix|\\det\b|\\operatorname\s*\{\s*det"),
    "special_function": re.compile(r"\\(?:Gamma|zeta)(?![a-zA-Z])|\\operatorname"),
    "function_power": re.compile(r"\\(?:sin|cos|tan|cot|sec|csc|sinh|cosh|tanh|log|ln|exp)\s*\([^()]*\)\s*\^"),  # \sin(x^{9}+y)^{9}: a timeout
    "calculus": re.compile(r"\\(?:int|iint|iiint|oint|lim|sum|prod|frac\s*\{\s*d\s*\}|partial)(?![a-zA-Z])"),
}
# Words and symbols that make an answer an alternative, a negation or a range rather than one answer.
_ALTERNATIVE = re.compile(
    r"(?<![A-Za-z\\])(?:or|and|not|nor|either|neither|except|between|maybe|perhaps|vs)(?![A-Za-z])"
    r"|\\(?:lor|vee|neg|lnot|neq|ne|pm|mp|approx|sim)(?![A-Za-z])|[≠±∨¬]"
    r"|\\(?:[lcv]?dots[bcmi]?|ddots)(?![A-Za-z])|\.\.\.|…"  # "3 + \ldots": a series cut short is not one value
    r"|\\(?:boxed|fbox)|\\\|", re.I)  # a box inside the answer: math-verify would grade only what one of them holds


def costly_shapes(s: str) -> set[str]:
    return {name for name, rx in COSTLY_SHAPES.items() if rx.search(s)}


def _too_costly(ans: str, gold: str = "") -> bool:
    """An answer that may keep sympy busy for seconds: over 150 characters and 3x its gold's length,
    more than 6 powers and 3x its gold's, nested over 30 braces deep, or with a costly shape (power tower, big factorial or exponent, a power of a group,
    a matrix or determinant, an integral/limit/sum/product) that its gold does not have."""
    too_long = len(ans) > max(MAX_EXPR_CHARS, 3 * len(gold))
    many_powers = ans.count("^") > max(6, 3 * gold.count("^"))
    return too_long or many_powers or brace_depth(ans) > MAX_BRACE_DEPTH or bool(costly_shapes(ans) - costly_shapes(gold))


def _one_expression(ans: str, gold: str) -> bool:
    """Whether a strict answer is one expression, as far as cheap rules can tell, so that math-verify
    (which takes the first value before a `\\text{}`, the right side of an `=` chain, the last `$...$`)
    grades what was written: no alternative, negation or range (`or`, `\\pm`, `\\neq`), no `$`, no words
    in `\\text{}`, and at most one `=` with a single symbol on its left; each allowed when the gold has it."""
    if _ALTERNATIVE.search(ans) and not _ALTERNATIVE.search(gold):
        return False  # "2 or 3", "not 2", "2 \pm 1"
    if "$" in ans and "$" not in gold:
        return False
    if any(re.search(r"[A-Za-z]{2,}|[,;]", w) for w in WRAPPER.findall(ans)) and not WRAPPER.search(gold):
        return False  # "\frac12 \text{ otherwise } \frac13", "\frac12 \text{, else } \frac13"
    eq = ans.count("=")
    if eq > (gold.count("=") or 1) or (eq == 1 and "=" not in gold and not re.fullmatch(r"\s*[A-Za-z](?:_\{?\w+\}?)?\s*", ans.split("=")[0])):
        return False  # "\frac13 = \frac12", "4 = 3"; "x = \frac12" stays
    return True


# TeX reads one token per argument: `\frac123` is (1/2)3 and `\sqrt23` is sqrt(2)3, where math-verify's fix of
# "malformed operators" reads 1/23 and sqrt(23). Braced here, its fix has nothing left to guess.
_TEX_FRAC = re.compile(r"\\([dt]?frac)\s*(\{[^{}]*\}|[0-9A-Za-z])\s*(\{[^{}]*\}|[0-9A-Za-z])")
_TEX_SQRT = re.compile(r"\\sqrt\s*([0-9A-Za-z])")
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:\\,\d{3})+(?![\d])")  # 1\,000 and 12\,345\,678 (latex2sympy reads 1*0)
_SPACING = re.compile(  # TeX spacing and invisible boxes: no meaning in math
    r"(?<!\\)\\(?:[,;:!> ]|(?:q?quad|(?:neg)?(?:thin|med|thick)space|enspace|enskip)(?![A-Za-z])|[hv]?phantom\s*\{[^{}]*\}|[hv](?:space|skip)\s*\{[^{}]*\})|~")
# Formatting that changes how a value looks, not what it is: `\boldsymbol{3}`, `\textcolor{red}{3}`, `\displaystyle 3`.
_STYLE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|color\s*\{[^{}]*\}|[Bb]igg?[lr]?(?![A-Za-z])|middle(?![A-Za-z]))|\\textcolor\s*\{[^{}]*\}")
_BOLD = re.compile(r"\\(?:boldsymbol|mathbf|textbf|bm|pmb)\s*\{([^{}]*)\}")
_ALIASES = {"\\lbrace": "\\{", "\\rbrace": "\\}", "\\lbrack": "[", "\\rbrack": "]", "\\lparen": "(", "\\rparen": ")", "\\dfrac": "\\frac",
            "\\tfrac": "\\frac", "\\ge": "\\geq", "\\le": "\\leq", "\\geqslant": "\\geq", "\\leqslant": "\\leq", "\\ne": "\\neq",
            "\\lvert": "|", "\\rvert": "|", "\\varnothing": "\\emptyset"}
_ALIAS = re.compile(r"\\(?:lbrace|rbrace|lbrack|rbrack|lparen|rparen|dfrac|tfrac|ge|le|geqslant|leqslant|ne|lvert|rvert|varnothing)(?![A-Za-z])")
_UNICODE_MATH = str.maketrans({"°": "^{\\circ}", "−": "-", "×": "\\times ", "·": "\\cdot ", "π": "\\pi "})
_UPRIGHT_CONSTANT = re.compile(r"\\(?:mathrm|text|operatorname)\s*\{\s*([eij])\s*\}")  # \mathrm{i} is i, as a model writes it
# A braced number that is no command's argument is the number itself to TeX (`{1}2` shows 12): unbraced, latex2sympy cannot
# add it to its neighbour as a mixed number (`{2}{3}`, `1{2}` were 5 and 3).
_NUMBER_IN_BRACES = re.compile(r"\{\s*(-?\s*\d+(?:\.\d+)?)\s*\}")
_TWO_ARGS = re.compile(r"\\(?:frac|cfrac|binom|dbinom|tbinom|overset|underset|stackrel)\s*$")
_SCRIPT_GAP = re.compile(r"([_^])\s+")  # `\log_ 2(8)` is `\log_2(8)`
# latex2sympy reads an integer followed by a positive number as a mixed number: `2(3)`, `2[3]`, `{2}(3)`, `(2)(3)` and
# `2\left(3\right)` are 5, `1 2` and `{1} 2` are 3. A number (not a sub- or superscript) before a group is made an explicit
# product; two numbers side by side are refused.
_NUMBER = r"(?<![_^\d.])(?<![_^]\{)(?<![_^]\{-)\d+(?:\.\d+)?"
# `{` alone opens an argument (\frac{1}{2}); so does `{(` after a closing brace (\frac{1}{(x+1)^2}), but not after a bare number (2{(3)}).
_NUMBER_GROUP = re.compile(rf"({_NUMBER}[)}}\]]*)\s*(?=\\left|\\\{{|[(\[])|({_NUMBER})\s*(?=\{{[\s{{]*(?:[(\[]|\\left|\\\{{))")
_NUMBER_GAP = re.compile(rf"{_NUMBER}[)}}\]]*\s+[{{(\[]*\d")
# A unit written after a gold value (`5\text{ cm}`, `7 \mathrm{m}`, `3\mbox{ h}^2`): math-verify parses without unit
# stripping (below), so it is taken off the gold, and off an answer whose gold has one.
# `\mathrm{i}`, `\mathrm{e}` (and j, d) are constants, not units; a unit follows a value, not an operator (`1+\mathrm{i}`).
_TRAILING_UNIT = re.compile(r"(?<=[\d})%\s])\s*\\(?:text|mathrm|mbox|textrm)\s*\{(?!\s*[eijd]\s*\})([^{}]*)\}(\^\{?\d\}?)?\s*$")
_PERCENT = re.compile(r"\s*\\?%\s*$")
# A closing bracket or brace, or a script's digit, right before a number: `(2)3`, `\frac{4}{2}3`, `10^2{3}` (TeX shows 2 3,
# latex2sympy adds or joins them).
_CLOSER_NUMBER = re.compile(r"[)\]]\s*\{?\s*(?:\d|\\frac)|\}\s*\d|[\^_]\s*\d+\s*\{\s*-?\d")  # `(2) - 3` is a difference; `\sin^2{x}` a power


_SCRIPT_BRACE = re.compile(r"[\^_]\s*\d+\s*\{\s*-?\d")  # `10^2{3}`: unbraced it would read 10^23


def _closer_number(s: str) -> bool:
    """A number right after a closing bracket or a non-script group (`(2)3`, `\frac{4}{2}3`), or a braced number after a
    script digit (`10^2{3}`); a script group before an argument is fine (`\log_{2} 8`, `x^{2}3` reads as a product)."""
    for m in _CLOSER_NUMBER.finditer(s):
        close = m.group()[0]
        if close in "}]":
            opener = "{" if close == "}" else "["
            depth, i = 0, m.start()
            while i >= 0:
                depth += (s[i] == close) - (s[i] == opener)
                if depth == 0:
                    break
                i -= 1
            before = s[:i].rstrip() if i > 0 else ""
            if (close == "}" and before.endswith(("^", "_"))) or (close == "]" and before.endswith("\\sqrt")):
                continue  # a script group (`\log_{2} 8`) or a root's index (`\sqrt[3]{8}`)
        return True
    return False


def _tex_args(s: str) -> str:
    s = _SCRIPT_GAP.sub(r"\1", _THOUSANDS.sub(lambda m: m.group().replace("\\,", ""), s.replace("\\$", "")))  # and \$5 is 5
    s = _ALIAS.sub(lambda m: _ALIASES[m.group()], _BOLD.sub(r"{\1}", _STYLE.sub(" ", _SPACING.sub(" ", s))))
    s = _UPRIGHT_CONSTANT.sub(r"\1", s).translate(_UNICODE_MATH)
    # a digit right after a fraction multiplies it, as TeX shows it (`\frac123` is 3/2); latex2sympy might add it
    s = _TEX_FRAC.sub(lambda m: f"\\{m[1]}{_braced(m[2])}{_braced(m[3])}" + ("\\cdot " if re.match(r"\s*\d", m.string[m.end():]) else ""), s)
    s = _TEX_SQRT.sub(r"\\sqrt{\1}", s)
    for _ in range(8):  # {{2}}: one brace level a pass
        s, before = _bare_numbers(s), s
        if s == before:
            break
    return s


def _bare_numbers(s: str) -> str:
    """`{3}` -> `3` where the group is no command's argument (nor a script's, nor `\\sqrt[n]`'s radicand)."""
    def sub(m: re.Match) -> str:
        before = s[: m.start()].rstrip()
        if not before:
            return m[1]
        if before[-1] in "^_]" or re.search(r"\\[A-Za-z]+$", before):
            return m.group()  # x^{2}, \sqrt[3]{8}, \frac{1}
        if before[-1] == "}":
            depth, i = 0, len(before) - 1
            while i >= 0:
                depth += (before[i] == "}") - (before[i] == "{")
                if depth == 0:
                    break
                i -= 1
            if i >= 0 and _TWO_ARGS.search(before[:i]):
                return m.group()  # \frac{1}{2}: the second argument
        return m[1]
    return _NUMBER_IN_BRACES.sub(sub, s)


# Commands a strict answer may use without its gold using them: values, operators, functions, Greek letters, and units/text
# (`_one_expression` refuses words). Anything else (`\le`, `\to`, `\star`, `\in`, `\equiv`, `\vert`, `\max`) only when the gold has it.
_COMMAND = re.compile(r"\\([A-Za-z]+)")
KNOWN_COMMANDS = frozenset(
    "frac cfrac sqrt binom dbinom tbinom cdot times div pi left right infty circ prime text mathrm mbox textrm "
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp "
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma tau upsilon phi varphi "
    "chi psi omega Gamma Delta Theta Lambda Xi Sigma Upsilon Phi Psi Omega".split())


def _unknown_commands(s: str) -> set[str]:
    return {c for c in _COMMAND.findall(s) if c not in KNOWN_COMMANDS}


def _braced(arg: str) -> str:
    return arg if arg.startswith("{") else "{" + arg + "}"


def _tex_products(s: str) -> str:
    return _NUMBER_GROUP.sub(lambda m: (m[1] or m[2]) + "\\cdot ", s)


def _expression_pair(response: str, sample: Sample, extraction: str) -> tuple[str, str] | float:
    """The (gold, answer) pair to verify, or the reward when no verification is needed."""
    ans, gold = answer_content(response, extraction), str(sample.answer)
    if ans is None:
        return 0.0
    if len(ans) > max(MAX_EXPR_CHARS, 3 * len(gold)):
        return 0.0  # `_too_costly`'s length bound, before any rewriting
    # `5\,\text{cm}`, `\mathrm{~cm}`: spacing is no part of a unit (but `1\,000` is a thousand)
    ans, gold = (_SPACING.sub(" ", _THOUSANDS.sub(lambda m: m.group().replace("\\,", ""), re.sub(r"(?<=\d)\{,\}(?=\d{3})", "", x)))
                 for x in (ans, gold))
    unit = _TRAILING_UNIT.search(gold)
    if unit and _TRAILING_UNIT.sub("", gold).strip():
        gold = _TRAILING_UNIT.sub("", gold)
        said = _TRAILING_UNIT.search(ans)
        if said and (" ".join(said[1].split()), said[2]) == (" ".join(unit[1].split()), unit[2]):
            ans = _TRAILING_UNIT.sub("", ans)  # the gold's own unit; another one (or "cm or 7 cm") stays, and is refused below
    if _PERCENT.search(ans) and (_PERCENT.search(gold) or not re.search(r"%", gold)):
        ans, gold = _PERCENT.sub("", ans), _PERCENT.sub("", gold)  # 25\% is 25 (latex2sympy cannot read \%)
    # latex2sympy stops at a newline (`2x\n+7` is 2) and at `\right )`: one space, no gap after \left/\right
    ans = re.sub(r"\\(left|right)\s+", r"\\\1", re.sub(r"\s+", " ", ans))
    raw_ans, raw_gold = ans, gold
    ans, gold = _tex_args(ans), _tex_args(gold)
    # after the rewrites (`(2){3}` is `(2)3`, `\frac{1}{2}3` is a product); a braced digit after a script digit before them
    if (_SCRIPT_BRACE.search(raw_ans) or _closer_number(ans)) and not (_SCRIPT_BRACE.search(raw_gold) or _closer_number(gold)):
        return 0.0
    if _unknown_commands(ans) - _unknown_commands(gold):
        return 0.0  # `\le 3`, `3\star`, `\to 3`: latex2sympy cannot read it, and math-verify would grade the first number
    ans, gold = _tex_products(ans), _tex_products(gold)
    if _NUMBER_GAP.search(ans) and not _NUMBER_GAP.search(gold):
        return 0.0  # "1 2": 12, 1 and 2, or 3?
    if ans.strip() == gold.strip():
        return 1.0
    if _too_costly(ans, gold):
        return 0.0
    if extraction != "lenient" and not _one_expression(ans, gold):
        return 0.0
    fast = fast_verdict(gold.strip(), ans.strip())  # simple LaTeX, decided here in microseconds
    return (gold, ans, extraction != "lenient") if fast is None else float(fast)


def expression_rewards(responses: list[str], samples: list[Sample], timeout_s: float = 2.0, workers: int = 2, extraction: str = "strict") -> list[float]:
    """`expression_reward` over a batch, the math-verify calls spread over the pool's workers."""
    pairs = [_expression_pair(r, s, extraction) for r, s in zip(responses, samples)]
    todo = [q for q in pairs if isinstance(q, tuple)]
    verdicts = iter(verify_pool(workers).verify(todo, timeout_s) if todo else [])
    return [float(next(verdicts)) if isinstance(q, tuple) else q for q in pairs]


def expression_reward(response: str, sample: Sample, timeout_s: float = 2.0, workers: int = 2, extraction: str = "strict") -> float:
    """1.0 when math-verify finds the answer equivalent to the ground truth (gold first), within
    `timeout_s` (in a worker process, so it works from any thread); 0.0 otherwise. Answers that
    `_too_costly` names score 0 without parsing; so do alternatives ("2 or 3", "\\pm") unless the
    gold has one too."""
    return expression_rewards([response], [sample], timeout_s, workers, extraction)[0]


expression_reward.batch = expression_rewards  # the router scores a rollout batch in one call


# The accuracy function of each answer type, where a caller grades by type alone (held-out eval, quality filter).
ACCURACY_BY_TYPE: dict[str, Any] = {"choice": choice_reward, "number": number_reward, "expression": expression_reward, "text": text_reward}

FUNCTIONS: dict[str, Any] = {
    "format": format_reward,
    "choice": choice_reward,
    "number": number_reward,
    "ednm": ednm_reward,
    "expression": expression_reward,
    "text": text_reward,
}
