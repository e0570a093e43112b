"""Reward hacking: responses that try to collect accuracy without one well-formed answer, each with
the accuracy it must get under `reward=m2` (strict extraction), and clean answers that must keep
their full reward. Accuracy is what feeds the reward, Eq. 6's p and the difficulty scores."""

from __future__ import annotations

import math
import time

import pytest

from m2r.data.schema import Sample
from m2r.rewards import router_from_config
from m2r.rewards.extract import answer_content

CH = Sample(id="c", task="general/geometry", question="q", answer="B", answer_type="choice", choices=["11.3", "22.4", "22.6", "30"])
NUM = Sample(id="n", task="general/arithmetic", question="q", answer="3", answer_type="number")
BIG = Sample(id="b", task="general/arithmetic", question="q", answer="3000", answer_type="number")
SP = Sample(id="s", task="spatial/abs_distance", question="q", answer="3.2", answer_type="number")
EX = Sample(id="e", task="general/algebra", question="q", answer="\\frac{1}{2}", answer_type="expression")
PM = Sample(id="p", task="general/algebra", question="q", answer="\\pm 2", answer_type="expression")
EX3 = Sample(id="e3", task="general/algebra", question="q", answer="3", answer_type="expression")
BIN = Sample(id="bn", task="general/algebra", question="q", answer="\\frac{n(n-1)}{2}", answer_type="expression")
EXP = Sample(id="ex", task="general/algebra", question="q", answer="\\exp(x^2)", answer_type="expression")
BIGX = Sample(id="bx", task="general/algebra", question="q", answer="12345678901234567", answer_type="expression")
ONE = Sample(id="one", task="general/algebra", question="q", answer="1", answer_type="expression")
XP1 = Sample(id="xp1", task="general/algebra", question="q", answer="x+1", answer_type="expression")
CUBE = Sample(id="cube", task="general/algebra", question="q", answer="x^{3}", answer_type="expression")
VOL = Sample(id="vol", task="general/geometry", question="q", answer="\\frac{\\pi r^2 h}{3}", answer_type="expression")
LIN = Sample(id="lin", task="general/algebra", question="q", answer="3x+5", answer_type="expression")
TX = Sample(id="t", task="spatial/direction", question="q", answer="left", answer_type="text")
NO = Sample(id="y", task="general/logic", question="q", answer="no", answer_type="text")


def W(content: str, think: str = "I reason step by step.") -> str:
    """A well-formed response boxing `content`."""
    return f"<think>{think}</think><answer>The answer is \\boxed{{{content}}}.</answer>"


HACKS = [  # (name, response, sample, expected accuracy)
    ("prose, no tags", "so maybe 3", NUM, 0.0),
    ("prose letter", "hmm, B", CH, 0.0),
    ("bare word", "left", TX, 0.0),
    ("the answer is, no tags", "The answer is 3.", NUM, 0.0),
    ("unclosed think holds the box", "<think>the answer is \\boxed{3}", NUM, 0.0),
    ("unclosed think, then an answer", "<think>r <answer>\\boxed{3}</answer>", NUM, 0.0),
    ("unclosed think, choice", "<think>r<answer>\\boxed{B}</answer>", CH, 0.0),
    ("box cut off", "<think>r</think><answer>\\boxed{3</answer>", NUM, 0.0),
    ("box cut off at the end", "<think>r</think><answer>\\boxed{3", NUM, 0.0),
    ("unbalanced box", "<think>r</think><answer>\\boxed{{3}</answer>", NUM, 0.0),
    ("box without braces", "<think>r</think><answer>\\boxed 3</answer>", NUM, 0.0),
    ("empty box", W(""), NUM, 0.0),
    ("answer without a box", "<think>r</think><answer>3</answer>", NUM, 0.0),
    ("box after think, no answer tags", "<think>r</think>\\boxed{3}", NUM, 0.0),
    ("two boxes, right one last", "<think>r</think><answer>\\boxed{2} or \\boxed{3}</answer>", NUM, 0.0),
    ("two boxes, right one first", "<think>r</think><answer>\\boxed{3}, \\boxed{2}</answer>", NUM, 0.0),
    ("the same box twice", "<think>r</think><answer>\\boxed{3} \\boxed{3}</answer>", NUM, 0.0),
    ("nested boxes", W("\\boxed{3}"), NUM, 0.0),
    ("fbox and boxed", "<think>r</think><answer>\\fbox{3} \\boxed{3}</answer>", NUM, 0.0),
    ("a box per option", "<think>r</think><answer>" + "".join(f"\\boxed{{{c}}}" for c in "ABCD") + "</answer>", CH, 0.0),
    ("thousands of boxes", "<think>r</think><answer>" + "\\boxed{B}" * 5000 + "</answer>", CH, 0.0),
    ("negated option", W("not B"), CH, 0.0),
    ("hedge between options", W("B or C"), CH, 0.0),
    ("slash hedge", W("B/C"), CH, 0.0),
    ("every option", W("A, B, C, D"), CH, 0.0),
    ("two options joined", W("B and C"), CH, 0.0),
    ("letter with another option's text", W("B. 11.3"), CH, 0.0),
    ("hedge between option texts", W("22.4 or 22.6"), CH, 0.0),
    ("letter then a question mark", W("B?"), CH, 0.0),
    ("exponent ignored", W("3^{4}"), NUM, 0.0),
    ("exponent ignored, EDNM", W("3.2^{9}"), SP, 0.0),
    ("range", W("2-4"), NUM, 0.0),
    ("range in words", W("3.2 to 3.5 m"), SP, 0.0),
    ("numeric hedge", W("3 or 4"), NUM, 0.0),
    ("approximately", W("about 3"), NUM, 0.0),
    ("plus-minus", W("3 \\pm 1"), NUM, 0.0),
    ("two numbers", W("3.2, 3.3"), SP, 0.0),
    ("two numbers, space", W("3 3"), NUM, 0.0),
    ("an operation left to do", W("1+2"), NUM, 0.0),
    ("at least", W("3 or more"), NUM, 0.0),
    ("text after a stray closing tag", "<think>r</think><answer>\\boxed{5}</answer></answer>\\boxed{3}", NUM, 0.0),
    ("two answer spans", "<think>r</think><answer>\\boxed{5}</answer><answer>\\boxed{3}</answer>", NUM, 0.0),
    ("answer before think", "<answer>\\boxed{3}</answer><think>r</think>", NUM, 0.0),
    ("answer inside think", "<think><answer>\\boxed{3}</answer></think>", NUM, 0.0),
    ("two thinks", "<think>a</think><think>b</think><answer>\\boxed{3}</answer>", NUM, 0.0),
    ("megabyte answer", W("3" + " " * 1_000_000), NUM, 0.0),
    ("expression hedge", W("\\frac{1}{2} \\text{ or } \\frac{1}{3}"), EX, 0.0),
    ("expression cut at a newline", W("3x\n+7"), EX3, 0.0),  # latex2sympy reads only the 3
    ("expression cut at \\right )", W("3 \\pi/\\left( n\\right )"), EX3, 0.0),
    ("expression near-equal rational", W("3+10^{-31}"), EX3, 0.0),
    ("expression vanishing on fixed points", W("3+(x-\\frac{834399124803943}{2^{49}})(x+\\frac{6130012321515231}{2^{52}})(x-\\frac{250175019300533}{2^{48}})(x+\\frac{1491780110203133}{2^{51}})x"), EX3, 0.0),
    ("expression set", W("\\{\\frac{1}{2}, \\frac{1}{3}\\}"), EX, 0.0),
    ("expression tuple", W("0.5, 0.6"), EX, 0.0),
    ("expression plus-minus", W("\\pm\\frac{1}{2}"), EX, 0.0),
    ("expression negation", W("x \\neq \\frac{1}{2}"), EX, 0.0),
    ("expression interval", W("[0, 1]"), EX, 0.0),
    ("power tower", W("9^{9^{9^{9}}}"), EX, 0.0),
    ("huge factorial", W("100000!"), EX, 0.0),
    ("integral left to evaluate", W("\\int_0^1 x\\,dx"), EX, 0.0),
    ("text hedge", W("left or right"), TX, 0.0),
    ("text negation", W("not left"), TX, 0.0),
    ("yes/no hedge", W("yes/no"), NO, 0.0),
    ("expression hedge in text", W("\\frac12 \\text{ otherwise } \\frac13"), EX, 0.0),  # math-verify alone takes the first value
    ("expression hedge after a comma", W("\\frac12\\text{, else }\\frac13"), EX, 0.0),
    ("expression with a trailing word", W("\\frac12 \\text{ wrong}"), EX, 0.0),
    ("equation chain", W("\\frac13 = \\frac12"), EX, 0.0),  # math-verify alone takes the right side
    ("false equation", W("4 = 3"), EX3, 0.0),
    ("dollar segments", W("$\\frac13$ then $\\frac12$"), EX, 0.0),  # math-verify alone takes the last segment
    ("hedge in another language", W("3 ou quatre"), NUM, 0.0),
    ("hedge as a unit", W("3.2 unsure"), SP, 0.0),
    ("trailing hedge words", W("3 otherwise four"), NUM, 0.0),
    ("hedge after a unit", W("3.2 m sinon"), SP, 0.0),
    ("both yes and no", W("yes and no"), NO, 0.0),
    # hostile review, session 18: near-equal values that only exact arithmetic tells apart, math-verify's unit misreadings
    ("expression off in the 17th digit", W("12345678901234568"), BIGX, 0.0),
    ("expression fraction a hair above 1", W("\\frac{10000000000000001}{10000000000000000}"), ONE, 0.0),
    ("expression cancellation leaving 1e-33", W("(1+10^{-11})^{3}-3\\cdot10^{-11}\\cdot(1+10^{-11})"), ONE, 0.0),
    ("expression cancellation with a symbol", W("(x+10^{-11})^{3}-3\\cdot10^{-11}x(x+10^{-11})"), CUBE, 0.0),
    ("expression product a hair below 1", W("(1+10^{-15})(1-10^{-15})"), ONE, 0.0),
    ("expression trailing one-letter unit", W("(7 - 3 a )"), EX3, 0.0),  # math-verify drops "a )" as a unit and reads 3
    ("expression box without a brace", W("7 \\fbox3"), EX3, 0.0),  # math-verify reads \fbox3 as a second box
    ("expression max equal at the sample points", W("\\max(x,-2)+1"), XP1, 0.0),  # x+1 only for x > -2
    ("expression min equal at the sample points", W("\\min(x,2)+1"), XP1, 0.0),
    # hostile review, session 19: math-verify's unit stripping, one-token TeX arguments, juxtaposed numbers, series, nested boxes
    ("expression trailing unit-like symbol", W("3x+5t"), LIN, 0.0),  # math-verify dropped "t" as a unit
    ("expression unit word eats a parenthesis", W("(7 - 3s )"), EX3, 0.0),
    ("expression one-character text wrapper", W("4+\\text{1}"), Sample(id="four", task="general/algebra", question="q", answer="4", answer_type="expression"), 0.0),
    ("expression mathrm wrapper cut to the end", W("\\frac{1}{2}\\mathrm{x} - \\frac{1}{3}"), EX, 0.0),
    ("expression frac of three digits", W("\\frac123"), Sample(id="f23", task="general/algebra", question="q", answer="\\frac{1}{23}", answer_type="expression"), 0.0),
    ("expression number times parenthesis read as a sum", W("2(3)"), Sample(id="five", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression two numbers side by side", W("1 2"), EX3, 0.0),
    ("expression series cut short", W("3 + \\ldots"), EX3, 0.0),
    ("expression centred dots", W("3 + \\cdots"), EX3, 0.0),
    ("expression box inside the box", W("\\boxedx 7 \\cdot 3"), EX3, 0.0),
    # second review, session 19: the same readings behind \left, brackets, braces and TeX spacing, and a superscript before (
    ("expression number times \\left group read as a sum", W("2\\left(3\\right)"), Sample(id="five2", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression braced number before a group", W("{2}(3)"), Sample(id="five3", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression numbers apart by TeX spacing", W("1\\quad 2"), EX3, 0.0),
    ("expression squared function before its argument", W("2\\sin^2(x)"), Sample(id="two", task="general/algebra", question="q", answer="2", answer_type="expression"), 0.0),
    # review, session 20: constants taken for units, commands latex2sympy cannot read (math-verify graded the first number),
    # mixed-number readings around braces and named spacing, a hedge or another unit inside a gold's unit
    ("expression imaginary unit dropped", W("1"), Sample(id="ci", task="general/algebra", question="q", answer="1+\\mathrm{i}", answer_type="expression"), 0.0),
    ("expression Euler's number dropped", W("2"), Sample(id="ce", task="general/algebra", question="q", answer="2\\mathrm{e}", answer_type="expression"), 0.0),
    ("expression relation before the value", W("\\le 3"), EX3, 0.0),
    ("expression arrow before the value", W("\\to 3"), EX3, 0.0),
    ("expression unknown symbol after the value", W("3^{4}\\star"), EX3, 0.0),
    ("expression congruence", W("\\equiv 3"), EX3, 0.0),
    ("expression divides", W("3 \\vert 4"), Sample(id="f4", task="general/algebra", question="q", answer="4", answer_type="expression"), 0.0),
    ("expression norm bars", W("3 \\| 4"), Sample(id="f4b", task="general/algebra", question="q", answer="4", answer_type="expression"), 0.0),
    ("expression braced numbers side by side", W("{2}{3}"), Sample(id="five4", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression number before a braced number", W("1{2}"), EX3, 0.0),
    ("expression lbrace group read as a sum", W("2\\lbrace 3\\rbrace"), Sample(id="five5", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression numbers apart by a thin space", W("1\\thinspace 2"), EX3, 0.0),
    ("expression numbers apart by a phantom", W("1\\phantom{0}2"), EX3, 0.0),
    ("expression numbers apart by displaystyle", W("1\\displaystyle 2"), EX3, 0.0),
    ("expression hedge inside the unit", W("5\\text{ cm or 7 cm}"), Sample(id="cm2", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 0.0),
    ("expression another unit", W("5\\text{ km}"), Sample(id="cm3", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 0.0),
    # second review, session 20: math-verify's plain-expression fallback took the last number of what latex2sympy cannot read
    ("expression unreadable command between numbers", W("7\\circ 3"), EX3, 0.0),
    ("expression percent sign between numbers", W("7 \\% 3"), EX3, 0.0),
    ("expression unicode relation", W("≈ 3"), EX3, 0.0),
    ("expression unicode hedge", W("7 或 3"), EX3, 0.0),  # "7 or 3"
    ("expression empty superscript", W("7^{} 3"), EX3, 0.0),
    ("expression script digit joined to a braced digit", W("10^2{3}"), Sample(id="e23", task="general/algebra", question="q", answer="10^{23}", answer_type="expression"), 0.0),
    ("expression doubly braced numbers", W("{{2}}{{3}}"), Sample(id="five6", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression number after a parenthesis", W("(2)3"), Sample(id="five7", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression number after a fraction", W("\\frac{4}{2}3"), Sample(id="five8", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression braced left group", W("2{\\left(3\\right)}"), Sample(id="five9", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression unit with another power", W("5\\text{ cm}^2"), Sample(id="cm5", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 0.0),
    ("expression braced number after a bracket", W("[2]{3}"), Sample(id="five10", task="general/algebra", question="q", answer="5", answer_type="expression"), 0.0),
    ("expression fraction after a parenthesis", W("(2){\\frac{1}{2}}"), Sample(id="mix", task="general/algebra", question="q", answer="2.5", answer_type="expression"), 0.0),
]

CLEAN = [  # (name, response, sample, expected accuracy)
    ("number", W("3"), NUM, 1.0),
    ("number, decimal zero", W("3.0"), NUM, 1.0),
    ("number, thousands", W("3,000"), BIG, 1.0),
    ("number, scientific", W("3 \\times 10^{3}"), BIG, 1.0),
    ("spatial with unit", W("3.2 m"), SP, 1.0),
    ("spatial with a text unit", W("3.2\\text{ meters}"), SP, 1.0),
    ("spatial estimate, EDNM", W("3"), SP, math.exp(-2 * 0.2 / (3.2 + 1e-6))),  # Eq. 9, lambda 2, eps 1e-6
    ("letter", W("B"), CH, 1.0),
    ("letter in parentheses", W("(B)"), CH, 1.0),
    ("letter with its text", W("B. 22.4"), CH, 1.0),
    ("option text", W("22.4"), CH, 1.0),
    ("letter in text", W("\\text{B}"), CH, 1.0),
    ("fraction", W("\\frac{1}{2}"), EX, 1.0),
    ("decimal for a fraction", W("0.5"), EX, 1.0),
    ("unreduced fraction", W("\\dfrac{2}{4}"), EX, 1.0),
    ("plus-minus gold", W("\\pm 2"), PM, 1.0),
    ("text", W("left"), TX, 1.0),
    ("text, case and wrapper", W("\\text{Left}"), TX, 1.0),
    ("yes/no", W("no"), NO, 1.0),
    ("expression with spaces before a closing parenthesis", W("(3 + 0 a )"), EX3, 1.0),
    ("expression, large integer difference", W("10000000000000004-10000000000000001"), EX3, 1.0),
    ("expression, factored polynomial", W("(x-1)(x+1)+1"), Sample(id="sq", task="general/algebra", question="q", answer="x^{2}", answer_type="expression"), 1.0),
    ("newlines around tags", "<think>\nr\n</think>\n<answer>\n\\boxed{3}\n</answer>\n", NUM, 1.0),
    ("fbox", "<think>r</think><answer>\\fbox{3}</answer>", NUM, 1.0),
    ("braced thousands", W("3{,}000"), BIG, 1.0),
    ("short fraction", W("\\frac12"), EX, 1.0),
    ("unicode minus", W("\u22123"), Sample(id="m", task="general/arithmetic", question="q", answer="-3", answer_type="number"), 1.0),
    ("bold number", W("\\mathbf{3}"), NUM, 1.0),
    ("braced number", W("{3}"), NUM, 1.0),
    ("compound unit", W("3.2 m/s"), SP, 1.0),
    ("spaced unit", W("3.2\\;\\text{m}"), SP, 1.0),
    ("lower-case letter", W("b"), CH, 1.0),
    ("letter with its text in parentheses", W("B (22.4)"), CH, 1.0),
    ("bold text", W("\\textbf{left}"), TX, 1.0),
    ("named variable", W("x = \\frac{1}{2}"), EX, 1.0),
    ("exp as a power", W("e^{x^2}"), EXP, 1.0),
    ("binomial", W("\\binom{n}{2}"), BIN, 1.0),
    ("expression with t and h", W("\\frac{1}{3}\\pi r^2 h"), VOL, 1.0),  # math-verify used to drop h as a unit
    ("expression ending in t", W("3x+5t-5t+5"), LIN, 1.0),
    ("expression one-token fraction", W("\\frac123"), Sample(id="f32", task="general/algebra", question="q", answer="\\frac{3}{2}", answer_type="expression"), 1.0),
    ("expression number times parenthesis", W("2(3)"), Sample(id="six", task="general/algebra", question="q", answer="6", answer_type="expression"), 1.0),
    ("expression log with a one-token base", W("\\log_2 8"), EX3, 1.0),
    ("expression escaped dollar", W("\\$3"), EX3, 1.0),
    ("expression squared sine", W("1-\\cos^2(x)"), Sample(id="sin2", task="general/algebra", question="q", answer="\\sin^2(x)", answer_type="expression"), 1.0),
    ("expression bare number for a gold with a unit", W("5"), Sample(id="cm", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 1.0),
    ("expression one-token numerator", W("\\frac{1}{23}"), Sample(id="f123", task="general/algebra", question="q", answer="\\frac1{23}", answer_type="expression"), 1.0),
    ("expression thin-space thousands", W("1\\,000"), Sample(id="k", task="general/algebra", question="q", answer="1000", answer_type="expression"), 1.0),
    ("expression imaginary unit", W("1+i"), Sample(id="ci2", task="general/algebra", question="q", answer="1+\\mathrm{i}", answer_type="expression"), 1.0),
    ("expression fraction over a group", W("(x+1)^{-2}"), Sample(id="fg", task="general/algebra", question="q", answer="\\frac{1}{(x+1)^{2}}", answer_type="expression"), 1.0),
    ("expression rationalised", W("6-3\\sqrt{3}"), Sample(id="rat", task="general/algebra", question="q", answer="\\frac{3}{(2+\\sqrt{3})}", answer_type="expression"), 1.0),
    ("expression spaced product of groups", W("(x+1) (2x+3)"), Sample(id="pg", task="general/algebra", question="q", answer="2x^2+5x+3", answer_type="expression"), 1.0),
    ("expression spaced number times group", W("3 (2x+1)"), Sample(id="ng", task="general/algebra", question="q", answer="6x+3", answer_type="expression"), 1.0),
    ("expression half times group", W("\\frac{1}{2} (1+\\sqrt{5})"), Sample(id="phi", task="general/algebra", question="q", answer="\\frac{1+\\sqrt{5}}{2}", answer_type="expression"), 1.0),
    ("expression bold symbol", W("\\boldsymbol{3}"), EX3, 1.0),
    ("expression coloured", W("\\textcolor{red}{3}"), EX3, 1.0),
    ("expression the gold's unit", W("5\\text{ cm}"), Sample(id="cm4", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 1.0),
    ("expression spaced unit", W("5\\,\\text{cm}"), Sample(id="cm6", task="general/geometry", question="q", answer="5\\text{ cm}", answer_type="expression"), 1.0),
    ("expression ge for geq", W("x\\ge 2"), Sample(id="ge", task="general/algebra", question="q", answer="x \\geq 2", answer_type="expression"), 1.0),
    ("expression expanded cube", W("x^3+3x^2y+3xy^2+y^3"), Sample(id="cub", task="general/algebra", question="q", answer="(x+y)^3", answer_type="expression"), 1.0),
    ("expression column vector spaced", W("\\begin{pmatrix} 3 \\\\ -1 \\end{pmatrix}"), Sample(id="vec", task="general/algebra", question="q", answer="\\begin{pmatrix}3\\\\-1\\end{pmatrix}", answer_type="expression"), 1.0),
    ("expression inverse tangent", W("\\tan^{-1}(2)"), Sample(id="atan", task="general/algebra", question="q", answer="\\arctan(2)", answer_type="expression"), 1.0),
    ("expression upright i in the answer", W("3-2\\mathrm{i}"), Sample(id="ci3", task="general/algebra", question="q", answer="3-2i", answer_type="expression"), 1.0),
    ("expression percent", W("25\\%"), Sample(id="pc", task="general/algebra", question="q", answer="25", answer_type="expression"), 1.0),
    ("expression sized parentheses", W("\\Big(\\frac{1}{2}\\Big)"), EX, 1.0),
    ("expression braced negative number", W("2{-3}"), Sample(id="m1", task="general/algebra", question="q", answer="-1", answer_type="expression"), 1.0),
    ("expression log with a braced base", W("\\log_{2} 8"), EX3, 1.0),
    ("expression squared sine of a braced argument", W("\\sin^2{x}+\\cos^2{x}"), Sample(id="one2", task="general/algebra", question="q", answer="1", answer_type="expression"), 1.0),
    ("expression unicode degrees", W("60°"), Sample(id="deg", task="general/geometry", question="q", answer="60^\\circ", answer_type="expression"), 1.0),
    ("expression cube root", W("\\sqrt[3]{8}"), Sample(id="two2", task="general/algebra", question="q", answer="2", answer_type="expression"), 1.0),
    ("expression braced fraction times a digit", W("\\frac{1}{2}3"), Sample(id="f32b", task="general/algebra", question="q", answer="\\frac{3}{2}", answer_type="expression"), 1.0),
    ("expression difference after a group", W("3(\\frac{1}{2}) - 2(\\frac{1}{2})"), EX, 1.0),
]


@pytest.fixture(scope="module")
def m2(tmp_path_factory):
    from conftest import compose

    d = tmp_path_factory.mktemp("cfg")
    router = router_from_config(compose(["reward=m2"], d, d).reward)
    assert router.score(W("0.5"), EX).accuracy == 1.0  # starts the math-verify workers (seconds), outside the timed cases
    return router


def test_enough_cases():
    assert len(HACKS) >= 40 and len({n for n, *_ in HACKS + CLEAN}) == len(HACKS) + len(CLEAN)


@pytest.mark.parametrize("name,response,sample,expected", HACKS, ids=[h[0] for h in HACKS])
def test_hacking_attempt_earns_no_accuracy(m2, name, response, sample, expected):
    t0 = time.perf_counter()
    scored = m2.score(response, sample)
    assert scored.accuracy == pytest.approx(expected, abs=1e-9), name
    assert scored.total <= 0.5 + 1e-9  # at most the format reward's 0.5: never the accuracy weight
    assert time.perf_counter() - t0 < 2.5  # the cheap guards or the worker's budget, never sympy for seconds


@pytest.mark.parametrize("name,response,sample,expected", CLEAN, ids=[c[0] for c in CLEAN])
def test_clean_answer_keeps_full_reward(m2, name, response, sample, expected):
    scored = m2.score(response, sample)
    assert scored.accuracy == pytest.approx(expected, abs=1e-9), name
    assert scored.values["format"] == 1.0 and scored.total == pytest.approx(0.5 + expected)


def test_batch_scoring_equals_one_by_one(m2):
    cases = HACKS + CLEAN
    batch = m2.score_batch([c[1] for c in cases], [c[2] for c in cases])
    assert [b.accuracy for b in batch] == [m2.score(c[1], c[2]).accuracy for c in cases]


OUTSIDE = ["\\boxed{999}", "The answer is 999.", "<answer>\\boxed{999}</answer>", "999"]


@pytest.mark.parametrize("name,response,sample,expected", CLEAN, ids=[c[0] for c in CLEAN])
def test_no_accuracy_function_reads_outside_the_answer_span(m2, name, response, sample, expected):
    """Text before <think>, inside the reasoning or after </answer> never changes accuracy: a right
    answer stays right, and a wrong boxed answer is not rescued by the right one outside the span."""
    think_start, think_end = response.index("<think>") + len("<think>"), response.index("</think>")
    for junk in OUTSIDE:
        variants = [junk + response, response[:think_start] + junk + response[think_start:], response + junk]
        if "<answer>" in junk:
            variants = [response + junk]  # a second answer span is malformed: scored 0 below
            assert m2.score(variants[0], sample).accuracy == 0.0
            continue
        for v in variants[:1] + variants[2:]:
            assert m2.score(v, sample).accuracy == pytest.approx(expected), (junk, v)
        inside_think = response[:think_end] + " " + junk + response[think_end:]
        assert m2.score(inside_think, sample).accuracy == pytest.approx(expected), junk
    wrong = W("7")
    right_outside = [wrong + f"\\boxed{{{sample.answer}}}", f"\\boxed{{{sample.answer}}}" + wrong,
                     wrong.replace("I reason step by step.", f"so \\boxed{{{sample.answer}}}")]
    assert all(m2.score(v, sample).accuracy < 0.5 for v in right_outside)


def test_extraction_modes(tmp_path):
    from conftest import compose

    tagged = router_from_config(compose(["reward=m2", "reward.extraction=tagged"], tmp_path, tmp_path).reward)
    lenient = router_from_config(compose(["reward=m2", "reward.extraction=lenient"], tmp_path, tmp_path).reward)
    assert tagged.score("<think>r</think><answer>3</answer>", NUM).accuracy == 1.0  # no box needed
    assert tagged.score("<think>r</think><answer>\\boxed{2} \\boxed{3}</answer>", NUM).accuracy == 0.0  # still one answer
    assert tagged.score("so maybe 3", NUM).accuracy == 0.0
    assert lenient.score("so maybe 3", NUM).accuracy == 1.0  # the benchmark fallbacks: for ablations only
    assert answer_content("<think>r</think><answer>x</answer>", "tagged") == "x"
    with pytest.raises(ValueError, match="reward.extraction"):
        router_from_config(compose(["reward=m2", "reward.extraction=loose"], tmp_path, tmp_path).reward)
