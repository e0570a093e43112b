"""The expression reward's fast path: simple LaTeX read by a small parser and compared by value.

A latex2sympy parse inside math-verify costs 7-18 ms, so a rollout batch of 256 distinct expression
answers takes seconds on two workers. Most answers a policy writes are simple: numbers, one-letter
symbols, `+ - * /`, `\\cdot`, `\\times`, `\\frac`, `\\sqrt`, powers, `\\pi` and parentheses. For those,
`fast_verdict` parses both sides here (tens of microseconds), evaluates them in 50-digit arithmetic
at random points and decides as `_numeric_verdict` does on math-verify's own parses:

- False when the values differ at a point by over 1e-9 relative (1e-2 when a decimal is written);
- True when neither side has a decimal, they agree to 1e-30 at every point, and both are rational
  functions (no root, no pi) whose values at the points are equal in exact fraction arithmetic
  (`proven_equal`): agreement to any fixed number of digits is not equality, since cancellation
  can leave a real difference of 1e-33 ((1+e)^3 - 3e(1+e) against 1, e = 10^{-11});
- None (math-verify decides) otherwise: a pair with a root or pi that agrees at every point, a root
  or fractional power of something that depends on a symbol (sqrt((x-5)^2) is 5-x at every point
  near 0 but not everywhere), and anything outside the subset.

The subset is the part of LaTeX whose reading by math-verify (latex2sympy2_extended with its
normalisation) is known, so that the verdict is the one math-verify would give. Forms it reads in
surprising ways are left to it: a digit or letter run after a number (`2(3)` and `1 2` are 5 and 3
to it, `1\\frac{1}{2}` and `2(\\frac{1}{2})` mixed numbers, `2m` or `2yr` a number with a unit), a letter before `(`
(a function call), `x^23` (x**23), `2^-2`, `x^2^3`, the letters it treats as units, constants or
upper case (c d e g h i l m o s t), a lone letter on either side (compared as a letter: `x` is not `x+0` to it), `\\frac12` without braces and decimals without a leading digit.
`tests/unit/rewards/test_fast_latex.py` checks every verdict against math-verify on generated pairs.

`constant_sympy` serves the math-verify workers: a constant with a root or pi (the pairs this module
cannot prove) is built as a sympy value from the same tree, so the worker skips latex2sympy's parse
and sympy only confirms the equality (1-2 ms instead of 7-25 ms); the same test file checks that the
worker's verdicts on those values are math-verify's verdicts on its own parses.
"""

from __future__ import annotations

import functools
import os
import random
import re
from fractions import Fraction

import mpmath

# Lower-case letters that math-verify reads as plain real symbols (the others are units or constants).
LETTERS = frozenset("abfjknpqruvwxyz")
MAX_CHARS = 200  # longer answers go to math-verify (its cheap bounds apply there)
DIGITS = 50  # working precision; exact agreement is required to 1e-30
_TOKEN = re.compile(
    r" +|\\left\(|\\right\)|\\[dt]?frac(?![A-Za-z])|\\sqrt(?![A-Za-z])|\\pi(?![A-Za-z])|\\cdot(?![A-Za-z])|\\times(?![A-Za-z])"
    r"|\d+\.\d+|\d+|[A-Za-z]|[-+*/^(){}]|.", re.S)


class _Doubt(Exception):
    """Outside the subset, or a value that cannot be compared safely."""


def _tokens(s: str) -> list[str]:
    out = []
    for m in _TOKEN.finditer(s):
        t = m.group()
        if t.startswith(" "):
            continue
        if t.startswith("\\left"):
            t = "("
        elif t.startswith("\\right"):
            t = ")"
        elif t in ("\\frac", "\\dfrac", "\\tfrac"):
            t = "frac"
        elif t in ("\\cdot", "\\times"):
            t = "*"
        elif t[0].isdigit():
            if len(t.replace(".", "")) > 30:
                raise _Doubt(t)
        elif t.isalpha() and len(t) == 1:
            if t not in LETTERS:
                raise _Doubt(t)
        elif t not in ("\\sqrt", "\\pi") and t not in "-+*/^(){}":
            raise _Doubt(t)
        out.append(t)
    return out


def _literal(tree) -> bool:
    """A number or a fraction of two numbers: math-verify reads `2(3)` as 5 and `2(\\frac{1}{2})` as 5/2."""
    return tree[0] == "num" or (tree[0] == "div" and tree[1][0] == "num" and tree[2][0] == "num")


class _Parser:
    """Recursive descent over the tokens; each node is (kind, tree) where kind names its leading
    factor for the implicit-multiplication rules and tree is a nested tuple."""

    def __init__(self, tokens: list[str]) -> None:
        self.t, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        t = self.peek()
        if t is None or (want is not None and t != want):
            raise _Doubt(f"expected {want}, got {t}")
        self.i += 1
        return t

    def parse(self):
        tree = self.expr()
        if self.peek() is not None:
            raise _Doubt(self.peek())
        return tree

    def expr(self):
        tree = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            tree = ("add" if op == "+" else "sub", tree, self.term())
        return tree

    def term(self):
        tree = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            tree = ("mul" if op == "*" else "div", tree, self.unary())
        return tree

    def unary(self):
        if self.peek() in ("+", "-"):
            op = self.take()
            inner = self.unary()
            return inner if op == "+" else ("neg", inner)
        return self.implicit()

    def implicit(self):
        kind, tree = self.power()
        while self.peek() is not None and self.peek() not in ("+", "-", "*", "/", ")", "}", "^"):
            right_kind, right = self.power()
            if right_kind == "num":
                raise _Doubt("a number right after a factor")  # x2, (3)2, 1 2
            if right_kind == "frac" and kind in ("num", "paren"):
                raise _Doubt("mixed number")  # 1\frac{1}{2}
            if right_kind == "letter" and kind == "letter":
                raise _Doubt("letter run")  # units (yr, ab), multi-letter names
            if right_kind == "paren" and (kind in ("letter", "pi") or _literal(right)):
                raise _Doubt("call or numeric group")  # x(3) is a call; 2(3) is 5, 2(\frac{1}{2}) 5/2
            kind, tree = right_kind, ("mul", tree, right)
        return tree

    def power(self):
        kind, tree = self.atom()
        if self.peek() == "^":
            self.take()
            t = self.peek()
            if t == "{":
                self.take()
                exponent = self.expr()
                self.take("}")
            elif t is not None and ((t.isdigit() and len(t) == 1) or t in LETTERS):
                self.take()
                exponent = ("num", t, True) if t.isdigit() else ("sym", t)
            else:
                raise _Doubt("exponent")  # x^23, 2^-2, x^\pi
            if self.peek() == "^":
                raise _Doubt("power tower without braces")
            tree = ("pow", tree, exponent)
        return kind, tree

    def atom(self):
        t = self.take()
        if t[0].isdigit():
            return "num", ("num", t, "." not in t)  # the digits, read at the working precision in `_value`
        if t in LETTERS:
            return "letter", ("sym", t)
        if t == "\\pi":
            return "pi", ("pi",)
        if t == "(":
            inner = self.expr()
            self.take(")")
            return "paren", inner
        if t == "frac":
            self.take("{")
            a = self.expr()
            self.take("}")
            self.take("{")
            b = self.expr()
            self.take("}")
            return "frac", ("div", a, b)
        if t == "\\sqrt":
            self.take("{")
            a = self.expr()
            self.take("}")
            return "sqrt", ("sqrt", a)
        raise _Doubt(t)


@functools.lru_cache(maxsize=4096)
def parse_simple(s: str):
    """The tree of `s` when it lies in the subset, else None."""
    if len(s) > MAX_CHARS or not all(" " <= c <= "~" for c in s):
        return None  # printable ASCII only: math-verify stops at a newline and reads no Unicode digits or spaces
    try:
        tokens = _tokens(s)
        return _Parser(tokens).parse() if tokens else None
    except (_Doubt, RecursionError, ValueError):
        return None


def _facts(tree, syms: set[str]) -> bool:
    """Collect the symbols into `syms`; whether every literal is exact (no decimal)."""
    kind = tree[0]
    if kind == "num":
        return tree[2]
    if kind == "sym":
        syms.add(tree[1])
        return True
    exact = True
    for child in tree[1:]:
        exact = _facts(child, syms) and exact
    return exact


_BIG = mpmath.mpf(10) ** 15
_SMALL = mpmath.mpf(10) ** -15


def _value(tree, at: dict):
    kind = tree[0]
    if kind == "num":
        v = mpmath.mpf(tree[1])  # 12345678901234567 is not 12345678901234568 (a float literal would be)
    elif kind == "sym":
        return at[tree[1]]
    elif kind == "pi":
        return +mpmath.pi
    elif kind == "neg":
        v = -_value(tree[1], at)
    elif kind == "sqrt":
        v = mpmath.sqrt(_value(tree[1], at))
    else:
        a, b = _value(tree[1], at), _value(tree[2], at)
        if kind == "add":
            v = a + b
        elif kind == "sub":
            v = a - b
        elif kind == "mul":
            v = a * b
        elif kind == "div":
            if abs(b) < mpmath.mpf(10) ** -30:
                raise _Doubt("division by zero")
            v = a / b
        else:  # pow
            if abs(b) > 64 or (abs(a) < mpmath.mpf(10) ** -30 and mpmath.re(b) <= 0):
                raise _Doubt("power")
            v = mpmath.power(a, b)
    if abs(v) > _BIG or (v != 0 and abs(v) < _SMALL):
        raise _Doubt("magnitude")  # within 1e-15..1e15 a difference under 1e-30 is rounding, never a real one (1+10^{-31})
    return v


# The points are secret to the process, so that no answer can be built to vanish on them
# (a polynomial with roots at fixed, published points would equal any gold there).
_SALT = os.urandom(8).hex()


def sample_points(symbols: list[str], seed: int = 0) -> list[dict[str, float]]:
    """Where to compare: one point without symbols, else 4 whose signs put every symbol both ways
    and any two (by sorted name, alternating) in all four combinations, since sqrt(x^2) is not x."""
    rng = random.Random(f"{_SALT}/{seed}")
    names = sorted(symbols)
    n = 4 if names else 1
    return [{x: (-1 if (k >> (j % 2)) & 1 else 1) * rng.uniform(0.3, 1.7) for j, x in enumerate(names)} for k in range(n)]


def _branches(tree) -> bool:
    """Whether a root or fractional power has a base that depends on a symbol: sqrt((x-5)^2) equals
    5-x at every sample point (|x| < 2) but not as a function, so such a pair is never called equal."""
    kind = tree[0]
    if kind == "sqrt" and _has_symbol(tree[1]):
        return True
    if kind == "pow" and _has_symbol(tree[1]):
        if _has_symbol(tree[2]):
            return True
        e = _value(tree[2], {})
        if mpmath.im(e) != 0 or mpmath.re(e) != int(mpmath.re(e)):
            return True  # x^{1/2}; x^{-1} and x^{2} are fine
    return kind not in ("num", "sym", "pi") and any(_branches(c) for c in tree[1:])


def _has_symbol(tree) -> bool:
    return tree[0] == "sym" or (tree[0] not in ("num", "pi") and any(_has_symbol(c) for c in tree[1:]))


def _rational(tree) -> bool:
    """Whether the tree is a rational function with rational coefficients: exact literals, + - * /
    and integer powers only (no root, no pi), so `_exact` computes its value without rounding."""
    kind = tree[0]
    if kind == "num":
        return tree[2]
    if kind == "sym":
        return True
    if kind in ("pi", "sqrt"):
        return False
    if kind == "pow":
        e = tree[2][1] if tree[2][0] == "neg" else tree[2]
        return e[0] == "num" and e[1].isdigit() and _rational(tree[1])
    return all(_rational(c) for c in tree[1:])


MAX_EXACT_BITS = 4096  # a fraction past this size is given up (nested powers grow it ~9x per level: minutes, in this process)


def _exact(tree, at: dict[str, Fraction]) -> Fraction:
    v = _exact_node(tree, at)
    if v.numerator.bit_length() > MAX_EXACT_BITS or v.denominator.bit_length() > MAX_EXACT_BITS:
        raise _Doubt("exact value too large")
    return v


def _exact_node(tree, at: dict[str, Fraction]) -> Fraction:
    kind = tree[0]
    if kind == "num":
        return Fraction(tree[1])
    if kind == "sym":
        return at[tree[1]]
    if kind == "neg":
        return -_exact(tree[1], at)
    a = _exact(tree[1], at)
    if kind == "pow":
        n = int(tree[2][1][1]) if tree[2][0] == "neg" else int(tree[2][1])
        if a == 0 and tree[2][0] == "neg":
            raise _Doubt("division by zero")
        return a ** (-n if tree[2][0] == "neg" else n)
    b = _exact(tree[2], at)
    if kind == "div" and b == 0:
        raise _Doubt("division by zero")
    return {"add": a + b, "sub": a - b, "mul": a * b}[kind] if kind != "div" else a / b


def proven_equal(g, p, points: list[dict[str, float]]) -> bool | None:
    """For a pair that agrees to 1e-30 at every point: True when both sides are rational functions
    and equal exactly (in fractions) at each point, False when they differ there by less than the
    tolerance (1+e^3 against 1, e = 10^{-11}: a real difference that no fixed precision rules out),
    None when a root or pi makes exact arithmetic impossible (math-verify then decides)."""
    if not (_rational(g) and _rational(p)):
        return None
    for point in points:
        at = {x: Fraction(v) for x, v in point.items()}  # the float's exact binary value
        if _exact(g, at) != _exact(p, at):
            return False
    return True


def decide(values: list[tuple[complex, complex]], exact: bool, may_be_equal: bool = True) -> bool | None:
    """The verdict from both sides' values at the sample points (see the module docstring); never
    True when `may_be_equal` is False (a branch or absolute value the points may not cross)."""
    if not may_be_equal:
        return None  # near a branch cut rounding can put a value on either side, so not False either
    close = 0
    for a, b in values:
        scale = max(1.0, abs(a), abs(b))
        if not all(map(mpmath.isfinite, (a, b))):
            return None
        d = abs(a - b)
        if d > (1e-9 if exact else 1e-2) * scale:
            return False
        close += d <= 1e-30 * scale
    return True if exact and may_be_equal and close == len(values) else None


def fast_verdict(gold: str, answer: str) -> bool | None:
    """Whether `answer` equals `gold` as math-verify would judge it, or None to ask math-verify."""
    g, p = parse_simple(gold), parse_simple(answer)
    if g is None or p is None or g[0] == "sym" or p[0] == "sym":
        return None  # math-verify compares a lone letter as a letter (an option), not as a value
    gs: set[str] = set()
    ps: set[str] = set()
    exact = _facts(g, gs) & _facts(p, ps)
    if gs != ps or len(gs) > 6:
        return None  # different symbols: math-verify's rules, not values
    try:
        points = sample_points(sorted(gs))
        with mpmath.workdps(DIGITS):
            values = []
            for point in points:
                at = {x: mpmath.mpf(v) for x, v in point.items()}
                values.append((_value(g, at), _value(p, at)))
            verdict = decide(values, exact, not (_branches(g) or _branches(p)))
        # Agreement to 1e-30 is not equality (cancellation can leave a real 1e-33): equal only when proven exactly.
        return proven_equal(g, p, points) if verdict else verdict
    except (_Doubt, ZeroDivisionError, OverflowError, ValueError):
        return None


def constant_sympy(s: str):
    """The sympy value of `s` when it is a constant of the subset without decimals (integers, + - * /,
    integer or rational powers, square roots, pi), built directly from the tree: what latex2sympy
    reads, without its 7-18 ms parse. None otherwise (symbols, decimals, outside the subset, or a
    value outside 1e-15..1e15). Used in the math-verify workers for the pairs `fast_verdict` cannot
    prove (a root or pi that agrees at every point), so that sympy only has to confirm them."""
    tree = parse_simple(s)
    if tree is None:
        return None
    syms: set[str] = set()
    if not _facts(tree, syms) or syms:
        return None
    try:
        with mpmath.workdps(DIGITS):
            _value(tree, {})  # the magnitude and power bounds, before sympy evaluates anything
    except (_Doubt, ZeroDivisionError, OverflowError, ValueError):
        return None
    return _sympy(tree)


def _sympy(tree):
    import sympy

    kind = tree[0]
    if kind == "num":
        return sympy.Integer(tree[1])
    if kind == "pi":
        return sympy.pi
    if kind == "neg":
        return -_sympy(tree[1])
    if kind == "sqrt":
        return sympy.sqrt(_sympy(tree[1]))
    a, b = _sympy(tree[1]), _sympy(tree[2])
    return {"add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "div": lambda: a / b, "pow": lambda: a**b}[kind]()
