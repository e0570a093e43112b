"""The expression reward's fast path (m2r.rewards.fast_latex) against math-verify itself.

Every verdict the fast path gives must be math-verify's verdict on the same (gold, answer) pair;
where it is unsure it must say None. Pairs come from a seeded generator of simple LaTeX (sympy's
printer on random expressions, hand-written rewrites a policy would produce, the forms
math-verify reads in surprising ways) so that the check covers far more than a hand list.
"""

from __future__ import annotations

import logging
import random

import pytest

from m2r.rewards.fast_latex import fast_verdict, parse_simple

mv = pytest.importorskip("math_verify")
sympy = pytest.importorskip("sympy")
logging.getLogger("math_verify").setLevel(logging.ERROR)


def math_verify_verdict(gold: str, answer: str) -> bool:
    g, a = (mv.parse(f"${s}$", parsing_timeout=None) for s in (gold, answer))
    return bool(g and a and mv.verify(g, a, timeout_seconds=None))


# Forms whose reading by math-verify is surprising: the fast path must not decide them.
QUIRKS = [
    ("5", "2(3)"), ("6", "2(3)"), ("5", "(2)(3)"), ("7", "(3)(4)"), ("5", "(3)2"), ("3", "1 2"), ("\\frac{3}{2}", "1\\frac{1}{2}"),
    ("\\frac{5}{2}", "2(\\frac{1}{2})"), ("2", "2m"), ("2", "2yr"), ("2", "2ab"), ("x^{23}", "x^23"), ("2", "2^-2"), ("x^{6}", "x^2^3"),
    ("2e", "2e"), ("x", "x(3)"), ("3\\pi", "\\pi(3)"), ("x+c", "x+c"), ("0.5", "\\frac{1}{2}"), ("\\frac12", "0.5"), (".5", "\\frac{1}{2}"),
    ("1", "1+10^{-31}"), ("\\frac{1}{3}", "\\frac{1}{3}+10^{-31}"), ("x+1", "\\left (x+1\\right )"), ("2(x+1)", "2x\n+2"), ("x+1", "x\u00a0+1"),
    ("3", "\uff13"), ("\\sqrt{x}", "\\sqrt{(x^{1/5})^{5}}"), ("1000", "1,000"), ("2I", "2i"), ("X", "x"), ("x", "x+0"), ("x+0", "x"), ("n", "-(-(n))"),
]


@pytest.mark.parametrize("gold,answer", QUIRKS)
def test_surprising_forms_are_left_to_math_verify(gold, answer):
    assert fast_verdict(gold, answer) is None


def test_known_verdicts():
    cases = {
        ("x^2+2x+1", "(x+1)^2"): True, ("x+1", "6(x+1) - 5(x+1)"): True, ("2^{10}", "(2^{10}) \\cdot \\frac{8}{8}"): True,
        ("\\frac{x}{2}", "\\frac{1}{2}x"): True, ("\\sqrt{x}", "x^{1/2}"): None, ("\\sqrt{(x-5)^{2}}", "5-x"): None, ("x^{-1}", "\\frac{1}{x}"): True, ("2x", "\\sqrt{4x^2}"): None,
        ("x+1", "x+1.5"): False, ("\\frac{\\sqrt{3}}{2}", "\\frac{7(\\frac{\\sqrt{3}}{2})}{7}"): None, ("2\\pi", "\\pi+\\pi"): None,  # equal only when proven exactly
        ("1", "(1+10^{-11})^{3}-3\\cdot10^{-11}\\cdot(1+10^{-11})"): False, ("12345678901234567", "12345678901234568"): None,
        ("1", "10000000000000001-10000000000000000"): None, ("\\frac{1}{x}", "\\frac{x}{x^{2}}"): True,
        ("\\frac{1}{3}", "\\frac{333333}{1000000}"): False, ("2", "2+10^{-12}"): None, ("\\sqrt{x}\\sqrt{y}", "\\sqrt{xy}"): None,
        ("\\sqrt{x}\\sqrt{y}", "\\sqrt{x y}"): None, ("\\sqrt{x}\\sqrt{y}", "\\sqrt{x \\cdot y}"): None, ("\\sqrt{2}x", "\\sqrt{2x^{2}}"): None,
    }
    for (gold, answer), want in cases.items():
        assert fast_verdict(gold, answer) is want, (gold, answer)
        if want is not None:
            assert math_verify_verdict(gold, answer) is want, (gold, answer)


def test_parser_bounds():
    assert parse_simple("1+" * 150 + "1") is None  # over MAX_CHARS
    assert parse_simple("(" * 60 + "1" + ")" * 60) is not None
    assert parse_simple("9" * 31) is None
    assert fast_verdict("1", "9^{9^{9}}") is None  # power over 64
    assert fast_verdict("1", "\\frac{1}{x-x}") is None
    assert fast_verdict("1", "10^{40}-10^{40}+1") is None  # past 1e30 the 50 digits are not enough


def _random_expr(rng: random.Random, depth: int):
    x, y, a, n = sympy.symbols("x y a n")
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([sympy.Integer(rng.randint(1, 12)), sympy.Rational(rng.randint(1, 9), rng.randint(2, 9)), x, x, y, a, n, sympy.pi, sympy.sqrt(rng.choice([2, 3, 5]))])
    op = rng.randrange(6)
    u, v = _random_expr(rng, depth - 1), _random_expr(rng, depth - 1)
    if op == 0:
        return u + v
    if op == 1:
        return u - v
    if op == 2:
        return u * v
    if op == 3:
        return u / v if v != 0 else u
    if op == 4:
        return u ** rng.randint(2, 3)
    return sympy.sqrt(u)


def _rewrites(rng: random.Random, gold: str, k: int) -> list[str]:
    """Equal forms a policy writes, then wrong ones."""
    return [
        f"({gold}) + {k} - {k}", f"\\frac{{{k + 2}({gold})}}{{{k + 2}}}", f"{k + 1}({gold}) - {k}({gold})", f"({gold}) \\cdot \\frac{{{k + 3}}}{{{k + 3}}}",
        f"-(-({gold}))", f"\\left({gold}\\right)", f"({gold}) + \\frac{{1}}{{{k + 7}}}", f"{k}({gold})", f"({gold})^{{2}}", f"-({gold})",
        f"({gold}) + 0.5", f"({gold}) \\times 1.01",
    ]


def test_agrees_with_math_verify_on_generated_pairs():
    rng = random.Random(7)
    pairs = []
    for k in range(70):
        e = _random_expr(rng, 2)
        gold = sympy.latex(e)
        forms = [sympy.latex(sympy.expand(e)), sympy.latex(sympy.factor(e)), sympy.latex(e + 1), sympy.latex(2 * e)]
        forms += rng.sample(_rewrites(rng, gold, k), 3)
        pairs += [(gold, f) for f in rng.sample(forms, 3)]
    decided = disagree = 0
    for gold, answer in pairs:
        fast = fast_verdict(gold, answer)
        if fast is None:
            continue
        decided += 1
        slow = math_verify_verdict(gold, answer)
        if fast != slow:
            disagree += 1
            print("DISAGREE", gold, "|", answer, "fast", fast, "math-verify", slow)
    assert disagree == 0
    # 45% since True needs exact proof (a root or pi agreeing everywhere goes to math-verify)
    assert decided >= 0.4 * len(pairs), f"the fast path decided only {decided} of {len(pairs)} pairs"


def test_worker_numeric_verdict_never_equal_through_a_branch():
    """The worker's shortcut on math-verify's own parses: an absolute value or a root of a symbol can
    agree with a gold at every sample point (|8-y| is 8-y for |y| < 2) without being equal."""
    from m2r.rewards.functions import _numeric_verdict

    def parsed(s):
        return mv.parse(f"${s}$", parsing_timeout=None)

    for gold, answer in [("8-y", "\\left|y - 8\\right|"), ("5-x", "\\sqrt{(x-5)^{2}}"), ("\\pi-2x+2", "\\left|2 - 2x + \\pi\\right|")]:
        assert _numeric_verdict(parsed(gold), parsed(answer)) is None and math_verify_verdict(gold, answer) is False
    assert _numeric_verdict(parsed("x^2+2x+1"), parsed("(x+1)^2")) is True


def test_exact_proof_gives_up_on_huge_fractions():
    """Nested powers grow the exact fractions ~9x per level (minutes at 6 levels, in the calling process): bounded."""
    import time

    from m2r.rewards.fast_latex import MAX_EXACT_BITS

    inner = "\\frac{1}{2+x^2}"
    for _ in range(6):
        inner = "\\frac{1}{1+" + inner + "^9}"
    answer = "x+1+0\\cdot" + inner
    assert len(answer) < 150 and MAX_EXACT_BITS == 4096
    t0 = time.perf_counter()
    assert fast_verdict("x+1", answer) is None  # math-verify (in a worker, under its timeout) decides
    assert time.perf_counter() - t0 < 10  # a hang guard, not a speed claim: unbounded, this took minutes


def _random_constant(rng: random.Random, depth: int):
    if depth == 0 or rng.random() < 0.25:
        return rng.choice([sympy.Integer(rng.randint(1, 12)), sympy.Rational(rng.randint(1, 9), rng.randint(2, 9)), sympy.pi,
                           sympy.sqrt(rng.choice([2, 3, 5, 8, 12])), sympy.sqrt(rng.choice([2, 3])) / 2])
    u, v = _random_constant(rng, depth - 1), _random_constant(rng, depth - 1)
    return [u + v, u - v, u * v, u / v, u ** rng.randint(2, 3), sympy.sqrt(u)][rng.randrange(6)]


def test_worker_constants_built_from_the_tree_judged_as_math_verify_judges_its_parse():
    """In the workers, a constant with a root or pi is built from the fast parser's tree instead of
    latex2sympy's 7-18 ms parse; the verdict on every generated pair must be the one math-verify gives
    on its own parses (equal rewrites and wrong answers alike)."""
    from m2r.rewards.fast_latex import constant_sympy
    from m2r.rewards.functions import judge

    rng = random.Random(11)
    pairs = []
    for k in range(60):
        e = _random_constant(rng, 2)
        gold = sympy.latex(e)
        forms = [sympy.latex(sympy.nsimplify(e)), sympy.latex(e + 1), sympy.latex(2 * e), sympy.latex(sympy.radsimp(e))]
        forms += rng.sample(_rewrites(rng, gold, k), 4)
        pairs += [(gold, f) for f in forms]
    built = true = 0
    for gold, answer in pairs:
        g, a = constant_sympy(gold), constant_sympy(answer)
        if g is None or a is None:
            continue
        built += 1
        ours = judge([g, gold], [a, answer])
        true += ours
        assert ours == math_verify_verdict(gold, answer), (gold, answer)
    assert built >= 0.4 * len(pairs) and true >= 40, (built, true, len(pairs))
    assert constant_sympy("x+\\sqrt{2}") is None and constant_sympy("0.5\\pi") is None and constant_sympy("2^{100}") is None
