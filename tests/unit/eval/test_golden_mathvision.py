"""Golden cases for the MATH-V scorer: hand-written responses with the verdict of the official
code (mathllm/MATH-V a1f5cc3, evaluation/evaluate.py `evaluate` + evaluation/utils.py), each
with the official code path that gives it. The official path has no GPT step, so every verdict
is the official code's own; they were derived by reading it and confirmed by running a copy of
`evaluate`'s extraction and `utils.is_equal` (latex2sympy2 1.9.1) outside this repository.

Abbreviations: FMA = utils.find_math_answer, SS = utils._strip_string, ET = utils.eval_tuple,
IE = utils.is_equal, L2S = round(eval(str(latex2sympy(x))), 2) in IE, OPT = the RAW option
text of the ground-truth letter (only lower-cased), EV = the extraction steps of evaluate().
"""

from __future__ import annotations

import time

import pytest

from m2r.eval import mathvision
from m2r.eval.items import EvalItem

OPTS5 = ["$\\frac{1}{3}$", "$30^{\\circ}$", "$6 \\mathrm{~m}$", "2:1", "$1.5 \\pi$"]
WORDS = ["red", "less than 10", "Yellow", "This cannot be worked out for certain.", "$a$"]
PCT = ["$50\\%$", "$25\\%$", "$2 \\sqrt{2}$", "$\\frac{\\sqrt{3}}{2}$", "$e$"]

# (answer, options, response, official verdict)  # official path
CASES = [
    # -- multiple choice: the letter, as EV extracts it --------------------------------------
    ("B", OPTS5, "\\boxed{B}", True),  # FMA -> "b"; IE("B", "b"): equal after lower()
    ("B", OPTS5, "\\boxed{C}", False),  # IE("b","c"): L2S of symbols raises; IE(OPT, "c") likewise
    ("B", OPTS5, "So I pick B.", True),  # EV: endswith(" B.") -> "B"
    ("C", OPTS5, "It has to be (C).", True),  # EV: endswith(" (C).") -> "C"
    ("D", OPTS5, "D\nbecause the ratio is two to one", True),  # EV: startswith("D\n") -> "D"
    ("A", OPTS5, "(A) A\nthe first one", True),  # EV: startswith("(A)\n")? no; startswith("(A) A\n") -> "A"
    ("A", OPTS5, "\\boxed{(A)}", True),  # EV final replace("(a)", "a")
    ("A", OPTS5, "\\boxed{\\text{A}}", True),  # FMA drops "\text" -> "{a}"; EV replace("{a}", "a")
    ("A", OPTS5, "The answer is \\boxed{A} and not \\boxed{B}", False),  # EV: count("oxed{") > 1 keeps the last box -> "b"
    # -- multiple choice: the option's text, compared RAW ------------------------------------
    ("A", OPTS5, "\\boxed{\\frac{1}{3}}", True),  # IE(OPT "$\frac{1}{3}$", "\frac{1}{3}"): L2S 0.33 == 0.33
    ("A", OPTS5, "\\boxed{0.333}", True),  # L2S: 0.333 rounds to 0.33 like 1/3
    ("B", OPTS5, "\\boxed{30^\\circ}", False),  # FMA -> "30"; L2S(OPT "$30^{\circ}$") raises: degrees never match the text
    ("B", OPTS5, "\\boxed{$30^{\\circ}$}", False),  # the option text itself, boxed: FMA strips it to "30" -> as above
    ("C", OPTS5, "\\boxed{6}", False),  # L2S(OPT "$6 \mathrm{~m}$") -> "6*\mathrm{m}", eval SyntaxError
    ("C", OPTS5, "\\boxed{6 \\mathrm{~m}}", False),  # FMA -> "6\mathrm{~m}" (no space); IE strings differ; eval fails
    ("D", OPTS5, "\\boxed{2}", True),  # L2S(OPT "2:1") = 2/1 -> 2.0 == 2: a plain number parse would say no
    ("D", OPTS5, "\\boxed{2:1}", True),  # IE: equal strings
    ("E", OPTS5, "\\boxed{1.5\\pi}", True),  # L2S(OPT "$1.5 \pi$") = 3*pi/2 -> 4.71 == 4.71
    ("E", OPTS5, "\\boxed{4.71}", True),  # L2S: 4.71 == 4.71
    ("E", OPTS5, "\\boxed{4.7}", False),  # L2S: 4.7 != 4.71
    ("A", WORDS, "\\boxed{red}", True),  # IE(OPT "red", "red"): equal strings
    ("C", WORDS, "\\boxed{yellow}", True),  # IE lower-cases both: "yellow" == "yellow"
    ("B", WORDS, "\\boxed{less than 10}", False),  # FMA removes spaces -> "lessthan10" != OPT "less than 10"; L2S has symbols
    ("D", WORDS, "\\boxed{This cannot be worked out for certain.}", False),  # FMA -> "thiscannotbeworkedoutforcertain" != OPT
    ("E", WORDS, "\\boxed{a}", False),  # "a" != "e" and != OPT "$a$"; L2S("$a$") is a free symbol -> NameError
    ("A", PCT, "\\boxed{0.5}", True),  # SS "0.5" -> "\frac{1}{2}"; L2S(OPT "$50\%$") = 1/2 -> 0.5 == 0.5
    ("A", PCT, "\\boxed{50\\%}", False),  # SS strips "\%" -> "50"; 50 != L2S(OPT) 0.5
    ("B", PCT, "\\boxed{25%}", False),  # a bare "%" stays: L2S("25%") raises; vs OPT "$25\%$" -> 0.25
    ("C", PCT, "\\boxed{2\\sqrt{2}}", True),  # IE(OPT "$2 \sqrt{2}$", "2\sqrt{2}"): L2S 2.83 == 2.83
    ("C", PCT, "\\boxed{2.828}", True),  # L2S: round(2.828, 2) == round(2*sqrt(2), 2) == 2.83
    ("D", PCT, "\\boxed{\\sqrt{3}/2}", True),  # SS: not a/b of integers, kept; L2S sqrt(3)/2 -> 0.87 == 0.87
    ("E", PCT, "\\boxed{2.72}", False),  # L2S(OPT "$e$") -> E, eval NameError (a naive parse would take e = 2.718)
    # -- free form: strings, then values rounded to 2 decimals -------------------------------
    ("2.5", [], "\\boxed{2.499}", True),  # L2S: round(2.499, 2) == 2.5
    ("2.5", [], "\\boxed{2.51}", False),  # L2S: 2.51 != 2.5
    ("2.5", [], "\\boxed{2.50}", True),  # strings differ; L2S 2.5 == 2.5
    ("2.5", [], "\\boxed{\\frac{5}{2}}", True),  # L2S 5/2
    ("2.5", [], "\\boxed{5/2}", True),  # SS _fix_a_slash_b: "5/2" -> "\frac{5}{2}"
    ("2.5", [], "\\boxed{2\\frac{1}{2}}", False),  # latex2sympy2 reads "2\frac{1}{2}" as 2*(1/2) = 1, not a mixed number
    ("-2", [], "\\boxed{-2.004}", True),  # L2S: round(-2.004, 2) == -2.0 == -2
    ("1024", [], "\\boxed{2^{10}}", True),  # L2S 2**10
    ("1000", [], "\\boxed{1,000}", True),  # L2S reads "1,000" as 1000 (ET: no brackets)
    ("3628800", [], "\\boxed{10!}", True),  # L2S factorial(10)
    ("3.14", [], "\\boxed{\\pi}", True),  # L2S pi -> math.pi -> 3.14
    ("45", [], "\\boxed{45^\\circ}", True),  # FMA removes "^\circ" -> "45"
    ("45", [], "\\boxed{45°}", False),  # "°" is not removed; L2S("45°") raises
    ("5", [], "\\boxed{5\\%}", True),  # SS removes "\%" -> "5"
    ("5", [], "\\boxed{5 km}", True),  # FMA removes spaces and "km" -> "5"
    ("8", [], "\\boxed{8 cm^3}", False),  # FMA removes "m^3" -> "8c"; L2S 8*c -> NameError
    ("61", [], "\\boxed{61\\text{ cm}}", False),  # FMA: spaces go first, so "\text{ " never cuts; "61{cm}" has a symbol
    ("61", [], "\\boxed{61}\\text{ cm}", True),  # greedy oxed{(.*)} -> "61}\text{ cm"; "}" before "{" -> "61"
    ("4.8", [], "so \\boxed{x = 4.8}", True),  # FMA keeps the right of "=" -> "4.8"
    ("4.8", [], "\\boxed{4.8 \\approx 5}", False),  # FMA keeps the right of "\approx" -> "5"
    ("(3,-4)", [], "\\boxed{(3, -4)}", True),  # FMA removes spaces -> "(3,-4)": equal strings
    ("(3,-4)", [], "\\boxed{(3.001,-4)}", False),  # ET -> "(3.0,-4)" != "(3,-4)"; L2S of a tuple raises
    ("(3,-4)", [], "\\boxed{(\\frac{6}{2},-4)}", False),  # ET: latex2sympy2 prints "6/2", eval 3.0 -> "(3.0,-4)" != "(3,-4)"
    ("(3,-4)", [], "\\boxed{(3.0,-4.00)}", True),  # ET: "3.0" is the Rational 3, printed "3" -> "(3,-4)" == "(3,-4)"
    ("C", [], "\\boxed{c}", True),  # free-form letter: equal after lower()
    ("2", [], "\\boxed{2 triangles}", True),  # FMA -> "2triangles"; latex2sympy2 lexes "tr" (trace) and stops there -> 2
    ("2", [], "\\boxed{2 squares}", False),  # "2squares" -> 2*s*q*u*a*r*E*s: eval NameError
    ("C", ["$\\frac{1}{2}$", "$\\frac{1}{3}$", "$\\frac{1}{4}$", "1", "2"], "So it is \\boxed{\\frac{1}{4}}. The answer is: \\frac{1}{4}", True),
    # ^ FMA's greedy box -> "\frac{1}{4}}.theansweris:\frac{1}{4"; latex2sympy2 stops at the stray "}" -> 0.25 == L2S(OPT)
    # -- free form: no box, the flags and the "is <number>" rule ----------------------------
    ("61", [], "The answer is 61.", True),  # EV: split("is ")[-1].rstrip(".") == "61" is a number
    ("61", [], "The answer is 61 cm.", False),  # EV flag "The answer is" -> "61 cm."; FMA -> "61cm"; symbols
    ("7", [], "the final answer is 7. Done", True),  # EV flag: split(". ")[0] -> "7"
    ("7", [], "the answer should be 7\nsince 3 + 4 = 7", True),  # EV flag "the answer should be": first line -> "7"
    ("7", [], "THE ANSWER IS 7", False),  # flags are case-sensitive: the whole text stays -> "theansweris7"
    ("7", [], "so x is 7", True),  # EV: split("is ")[-1] == "7" is a number
    # -- empty and M2 format ------------------------------------------------------------------
    ("7", [], "", False),  # IE: an empty answer is never equal
    ("7", [], "<think>the answer is 7</think><answer></answer>", False),  # departure 1: only the empty answer tag is read
    ("7", [], "<think>maybe \\boxed{6}</think><answer>so \\boxed{7}</answer>", True),  # departure 1: the answer tag's box
]


@pytest.mark.parametrize("answer,options,response,verdict", CASES, ids=[f"{i}:{c[2][:30]}" for i, c in enumerate(CASES)])
def test_official_verdict(answer, options, response, verdict):
    item = EvalItem(key={"id": "g"}, question="q", options=list(options), answer=answer)
    assert mathvision.score(item, response)["correct"] is verdict


@pytest.mark.parametrize("s,value", [
    ("$\\frac{1}{3}$", 0.33), ("2:1", 2.0), ("$1: 1$", 1.0), ("$50\\%$", 0.5), ("$1.5 \\pi$", 4.71), ("\\sqrt{2}/2", 0.71),
    ("2^{10}", 1024), ("1,000", 1000), ("x=5", 5), ("{5}", 5), ("5.", 5), ("\\frac{90}{23}", 3.91), ("2\\frac{1}{2}", 1.0),
    ("5-4-3-2-1", -5), ("$30^{\\circ}$", None), ("$6 \\mathrm{~m}$", None), ("e", None), ("a", None), ("|-3|", None),
    ("\\infty", None), ("25%", None), ("\\boxed{5}", None), ("\\text{5}", None), ("(3,-4)", None), ("1<2", 1),
    ("\\frac{1}{4}}.theansweris:\\frac{1}{4", 0.25), ("2triangles", 2), ("15.finally", 15), ("1.5.bystep4", 1.5), ("[400,500]", 400500),
    ("$10 \\%$", None), ("10\\%", 0.1), ("2π", None), ("$6\\left(1+\\frac{1}{2} \\sqrt{3}\\right)$", 11.2), ("\\frac{1}{\\sqrt[3]{6}}", 0.55),
])
def test_latex_value_differs_from_a_number_parse(s, value):
    """latex2sympy2 + eval values where a plain number parse (parse_number) says otherwise: ratios,
    percents, implicit products, symbols without a value, degrees and units that fail to parse."""
    got = mathvision.latex_value(s.lower())
    assert got == value if value is not None else got is None


def test_pathological_answers_are_bounded():
    item = EvalItem(key={"id": "g"}, question="q", options=[], answer="2")
    start = time.monotonic()
    for r in ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{99999!}", "\\boxed{" + "{" * 40 + "2" + "}" * 40 + "}", "\\boxed{" + "1+" * 600 + "1}",
              "\\boxed{2**99999999}", "\\boxed{(" + ",".join(["1"] * 100) + ")}",
              "The answer is 3." + "3" * 4400, "\\boxed{" + "1" * 4400 + "}", "So x = 0." + "9" * 5000]:  # repetition loops: no crash (over Python's 4,300-digit limit)
        assert mathvision.score(item, r)["correct"] is False
    assert time.monotonic() - start < 15
