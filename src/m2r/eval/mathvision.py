"""MATH-Vision (MATH-V): loader for its own JSONL + images, and its official scoring rules.

Native format (github.com/mathllm/MATH-V, `data/test.jsonl` / `testmini.jsonl`): one object per
problem with `id`, `question` (with `<image1>` placeholders), `options` (list, empty for free
form), `answer` (a letter A-E for multiple choice), `image` (a path relative to the data root),
`level`, `subject`. The Hugging Face parquet release carries the same fields with the image as
bytes (`decoded_image`).

Scoring follows mathllm/MATH-V at a1f5cc3, `evaluation/evaluate.py` (`evaluate`, the
`regen_answer` branch that reads the answer from `response`) and `evaluation/utils.py`
(`find_math_answer`, `_strip_string` and its helpers, `eval_tuple`, `is_equal`), rule for rule:

- extraction: a response ending " X." / " (X)." or starting "X\\n" / "(X)\\n" / "(X) X\\n" becomes
  the letter X; a number after the last "is " becomes the answer; without "oxed{", each of "the
  final answer is", "the answer is", "the correct answer is", "the answer should be" (as written
  and with "The") cuts the text to what follows it, up to the line end and the first ". "; with
  several boxes only the last is kept; then `find_math_answer`: lower-case, the greedy
  `oxed{(.*)}`, the `=` / `\\approx` right-hand side, spaces, `\\text`, `\\left`/`\\right`, degrees,
  `m^3`/`units`/`km`, `$`, `\\%` (not a bare `%`), `\\sqrt2` -> `\\sqrt{2}`, `0.5` -> `\\frac{1}{2}`,
  `a/b` -> `\\frac{a}{b}`; `(a)`/`{a}` -> `a`, trailing dots and a leading colon dropped.
- comparison, `is_equal(gt, answer) or is_equal(option_text, answer)` with the RAW ground truth
  and the RAW option text (only lower-cased, never normalised): equal stripped strings; else both
  sides through `eval_tuple` (a "(..,..)" / "[..,..]" tuple with its elements evaluated and
  rounded) and equal; else equal values `round(eval(str(latex2sympy(s))), 2)`, where any error
  on either side means "not equal". So "$30^{\\circ}$" as an option text never matches "30"
  (latex2sympy cannot parse `^{\\circ}`), "$50\\%$" has the value 0.5, "$6 \\mathrm{~m}$" has no
  value, and "2:1" has the value 2.

Departures, and what each does to the score:

1. The official code reads the whole response; we read the part after the last `</think>` and,
   when there is an `<answer>` tag, the inside of the last one (our M2 format). Responses without
   these tags (every official output) are read exactly as the official code reads them.
2. The official code uses `latex2sympy2` (OrangeX4, 1.9.1; it pins antlr 4.7.2, which clashes
   with ours); we parse with `latex2sympy2_extended` (no normalisation, its mixed-number reading
   of "2\\frac{1}{2}" turned off) after rewriting the input the way latex2sympy2 reads it: the
   parse stops without error at the first token that cannot continue (a stray "}", a full stop,
   "tr"/"rows"/... matrix-function words: "\\frac{1}{4}}.so" -> 1/4, "2triangles" -> 2);
   `^\\circ`, `\\text`, `\\mathrm`, `\\boxed`, `\\$`, non-ASCII characters give no value; `5\\%`
   is 5/100 (but "5 \\%" has no value), "1,000" is 1000, `x=5` is 5. The printed expression is
   evaluated as Python's `eval` would, with the names of `math` only (`E`, `I`, `oo`, `Abs`, ...
   raise, as officially); int or float as latex2sympy2 prints it ("6/2" -> 3.0, "3.0" -> 3),
   which `eval_tuple`'s text shows. Checked against latex2sympy2 1.9.1 on all 10,728 distinct
   strings of MATH-V test (answers, option texts) and of the answers extracted from the 48,640
   responses in the repository's `outputs/` (15 models): the values agree on all but one string
   over 1000 characters (departure 3), and the verdicts on all 48,640 responses (the verdicts the
   authors stored in those files differ from a fresh run on one). latex2sympy2 also keeps state
   between calls (after a differential such as "dx" is parsed, every later letter raises), so an
   official run depends on the order of the answers; we give every answer a fresh parser, as a
   fresh official process would.
3. Guards the official code lacks: a value is not computed (the answer counts as having none)
   for strings over 1000 characters, nested over 30 braces, power towers, factorials of 4-digit
   numbers, integer powers with over 10**4 digits, or parses that take over 5 s (the parser runs
   in a worker process, so the bound holds in any thread). No benchmark answer comes near these
   bounds; the official code would hang or run for minutes on them and then, almost always, find
   no match.
4. A ground-truth letter beyond the options (the official code raises IndexError) or a
   non-letter answer with options gives no option text instead of a crash.
5. Readings of latex2sympy2 1.9.1 the rewriting does not reproduce (found by running the official
   parser on probe strings; none occurs in the 48,640 repository responses, and none changes a
   verdict in the sweep of `tests/unit/eval/test_golden_mathvision_sweep.py`, since the official
   extraction keeps only what follows the last "="): `\\pi_1=5` (officially 3.14; here no value),
   `x_a_b=5` (officially 5; here none);
   `\\lfloor 5.5\\rfloor` and `\\exp(\\ln 5)` are 5.0 here, 5 officially (only `eval_tuple`'s text differs).
   Fixed since the review that found them: `\\log_{2}8` and `x_1=5` (3 and 5), `\\{5\\}` (5),
   `5 \\end{aligned}` (no value), `\\exp(1)` (no value), `\\exp(\\ln 5)` (5).
"""

from __future__ import annotations

import ast
import math
import multiprocessing as mp
import re
import threading
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from m2r.eval.items import EvalItem, image_ref, read_rows
from m2r.rewards.extract import graded_text
from m2r.rewards.functions import brace_depth

OFFICIAL_PROMPT = (
    "Please solve the problem step by step and put your answer in one \"\\boxed{{}}\". "
    "If it is a multiple choice question, only one letter is allowed in the \"\\boxed{{}}\".\n{question}\n{options}"
)


def load(root: str | Path, split: str = "testmini") -> list[EvalItem]:
    """MATH-V rows from `<root>/<split>.jsonl` (images relative to root) or the HF parquet files."""
    root = Path(root)
    return [
        EvalItem(
            key={"id": str(r["id"])}, question=r["question"], options=list(r.get("options") or []), answer=str(r["answer"]),
            images=[image_ref(r.get("decoded_image") or r.get("image"), root, r.get("image") if isinstance(r.get("image"), str) else None)],
            meta={"subject": r.get("subject"), "level": r.get("level")},
        )
        for r in read_rows(root, split, "MATH-V")
    ]


def prompt(item: EvalItem) -> str:
    """The official MATH-V prompt (options lettered A-E when present)."""
    q = re.sub(r"<image\d+>", "", item.question).strip()
    opts = "\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(item.options))
    return OFFICIAL_PROMPT.format(question=q, options=opts).strip()


# ------------------------------------------------------------------------------------------------
# Extraction: evaluate.py `evaluate` (regen_answer) and utils.py `find_math_answer`.

_FLAGS = ("the final answer is", "the answer is", "the correct answer is", "the answer should be")


def _is_number(s: str) -> bool:
    try:
        float(s)  # Python's float: whitespace, "1_000", "inf", "nan" all count, as officially
    except ValueError:
        return False
    return True


def _fix_sqrt(s: str) -> str:
    """`\\sqrt2` -> `\\sqrt{2}` (one character taken as the radicand)."""
    if "\\sqrt" not in s:
        return s
    head, *rest = s.split("\\sqrt")
    return head + "".join("\\sqrt{" + p[0] + "}" + p[1:] if p and p[0] != "{" else "\\sqrt" + p for p in rest)


def _fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`; a `\\frac` with under two characters after it leaves `s` unchanged."""
    head, *rest = s.split("\\frac")
    out = head
    for p in rest:
        out += "\\frac"
        if p[:1] == "{":
            out += p
        elif len(p) < 2:
            return s
        else:
            out += "{" + p[0] + "}" + (p[1:] if p[1] == "{" else "{" + p[1] + "}" + p[2:])
    return out


def _fix_a_slash_b(s: str) -> str:
    """`3/4` -> `\\frac{3}{4}` for two integers written canonically (as `int` prints them)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _strip_string(s: str) -> str:
    """utils.py `_strip_string`, step for step."""
    for old, new in [("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"), ("\\left", ""), ("\\right", ""),
                     ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", "")]:
        s = s.replace(old, new)
    s = s.split("\\text{ ")[0]  # units on the right
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")  # only `\%`: a bare `%` stays
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = _fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:  # officially `\frac12` is mended only next to a sqrt
        s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


def find_math_answer(s: str) -> str:
    """utils.py `find_math_answer`: the boxed part (if any) of `s`, cleaned of LaTeX and units."""
    s = s.lower().replace("{}", "")
    # `re.findall('oxed{(.*)}', s, re.S)[-1]` is the text from the first "oxed{" to the last "}"
    # (greedy, one match); found here in linear time.
    i, j = s.find("oxed{"), s.rfind("}")
    ans = s[i + 5 : j] if i != -1 and j >= i + 5 else s
    k = ans.find("}")
    if k != -1 and (ans.find("{") == -1 or k < ans.find("{")):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in [(" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"), ("\n", ""), ("\\text", ""),
                     ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""),
                     ("{m}^3", ""), ("m^3", ""), ("{units}", ""), ("units", ""), ("{km}", ""), ("km", "")]:
        ans = ans.replace(old, new)
    return _strip_string(ans)


def extract(response: str | None) -> str:
    """The model's answer as the official `evaluate` reads it from a response (lower-case, normalised)."""
    m = graded_text(response or "").strip()
    for c in "ABCDE":
        if m.endswith(f" {c}.") or m.endswith(f" ({c}).") or m.startswith((f"{c}\n", f"({c})\n", f"({c}) {c}\n")):
            m = c
    tail = m.split("is ")[-1].rstrip(".")
    if _is_number(tail):
        m = tail
    if "oxed{" not in m:
        for flag in _FLAGS:
            for f in (flag, flag.replace("the", "The")):
                cut = f in m
                m = m.split(f)[-1].strip()
                if cut:
                    m = m.split("\n")[0].split(". ")[0]
    elif m.count("oxed{") > 1:
        m = "\\boxed{" + m.split("oxed{")[-1]
    m = find_math_answer(m)
    for c in "abcde":
        m = m.replace(f"({c})", c)
    for c in "abcde":
        m = m.replace(f"{{{c}}}", c)
    return m.rstrip(".").lstrip(":").strip()


# ------------------------------------------------------------------------------------------------
# Values: `round(eval(str(latex2sympy(s))), 2)` (utils.py `is_equal`, `eval_tuple`).

MAX_VALUE_CHARS = 1000
MAX_BRACE_DEPTH = 30
PARSE_TIMEOUT_S = 5.0
_PLAIN = re.compile(r"-?\d+(?:\.\d+)?")
_POWER_TOWER = re.compile(r"\^\s*\{[^{}]*\^|\^\s*\d+\s*\^|\*\*[^*]*\*\*")
_BIG_FACTORIAL = re.compile(r"\d{4,}\s*!")
# What latex2sympy2 1.9.1 cannot parse (or turns into text that `eval` rejects) while the
# extended parser reads a number: officially these have no value.
_NO_VALUE = re.compile(r"\\[()\[\]]|\\circ|\\degree|\\text|\\mathrm|\\mathbf|\\mathit|\\operatorname|\\boxed|\\\$|\\overline|\\textbf|"
                       r"\\mbox|\\hbox|\\emph|\\fbox|\\tag|\\;|\\:|\\!|\\ ")
_MATH = {k: getattr(math, k) for k in dir(math) if not k.startswith("_")}
# Where latex2sympy2 prints a division (a fraction, a ratio, a percent, a non-integer decimal, a
# negative power) or a float function, Python's eval returns a float ("6/2" -> 3.0) while the
# extended parser may have reduced it to an Integer. The type shows in `eval_tuple`'s "(3.0,-4)".
_FLOAT_RESULT = re.compile(r"\\[dt]?frac|/|:|\\div|\\%|\\sqrt|\\pi|\\(?:sin|cos|tan|cot|sec|csc|arc|log|ln|exp)|\^\s*\{?\s*\(?-|\d\.\d*[1-9]")


# Words latex2sympy2's lexer reads as one token (matrix functions and the like) that need an
# argument: after a complete expression the parse stops there ("2triangles" -> 2: "tr" is trace).
_STOP_WORDS = re.compile(r"orthogonalize|eigenvectors|eigenvalues|diagonalize|nullspace|eigenvects|eigenvals|arccosh|arcsinh|arctanh|"
                         r"pmatrix|bmatrix|vmatrix|hstack|vstack|matrix|arcosh|arsinh|artanh|trace|zeros|floor|orth|norm|rank|rows|"
                         r"cols|ones|diag|ceil|rref|eye|gcd|lcm|svd|SVD|tr|E")
_STOP_COMMANDS = ("\\rightarrow", "\\right ", "\\choose", "\\\\")
_ASSIGNED = re.compile(r"\s*(?:[a-zA-Z]|\\(?!pi(?![a-zA-Z]))[a-zA-Z]+)(?:_(?:\{[^{}]*\}|[a-zA-Z0-9]+))?\s*")  # "x", "x_1", "\alpha_{n+1}"


def _parsed_prefix(s: str) -> str | None:
    """The part of `s` that latex2sympy2 reads: its grammar has no end-of-input rule, so the parse
    stops, without error, at the first token that cannot continue the expression: a closing
    bracket without its opening one ("\\frac{1}{4}}.so" -> 1/4), a full stop that starts no
    number ("15.finally" -> 15, "1.5.by" -> 3/2), one of `_STOP_WORDS`, "_", "&". Such a token
    inside a bracket is an error instead (None)."""
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if s.startswith("\\end", i):
                return None  # "5 \end{aligned}": an error, not the part before it
            if s.startswith(_STOP_COMMANDS, i):
                return s[:i] if not stack else None
            m = re.match(r"\\[a-zA-Z]+", s[i:])
            i += len(m.group()) if m else 2  # a command, or an escaped character (`\{`, `\%`)
            continue
        stop = None
        if c in "([{":
            stack.append(c)
        elif c in pairs:
            if not stack or stack[-1] != pairs[c]:
                return s[:i]
            stack.pop()
        elif c == "_" and i and s[i - 1].isalpha():
            pass  # a subscript of a symbol or of \log ("x_1", "\log_{2}8"); after a number "_" ends the parse ("5_3" -> 5)
        elif c == "." and not s[i + 1 : i + 2].isdigit() or c in "_&":
            stop = i
        elif c.isalpha():
            if c == "d" and s[i + 1 : i + 2].isalpha():  # a differential "dx" is one token
                i += 2
                continue
            w = _STOP_WORDS.match(s, i)
            if w and not s[w.end() : w.end() + 1] == "(":
                stop = i
        if stop is not None:
            return s[:stop] if not stack else None
        i += 1
    return s


def _official_form(s: str) -> str | None:
    """`s` rewritten so that latex2sympy2_extended (no normalisation) reads what latex2sympy2 1.9.1
    reads, or None where latex2sympy2 gives no value."""
    s = re.sub(r"\\(?:left|right)(?=[()\[\]|.]|\\[{}|])", "", s)  # latex2sympy2 reads \left( as (
    for old in ("$", "~", "\\,", "\\displaystyle", "\\qquad", "\\quad"):
        s = s.replace(old, " ")  # as latex2sympy2 does
    s = s.replace("\\{", "(").replace("\\}", ")")  # latex2sympy2 reads \{5\} as (5), the extended parser as a set
    s = _parsed_prefix(s)
    if s is None or _NO_VALUE.search(s) or not s.isascii():
        return None  # latex2sympy2's lexer stops on a character it does not know (°, π, ≈) with an error
    s = re.sub(r"(\d+(?:,\d{3})*(?:\.\d+)?)\\%", r"(\1/100)", s.strip())  # latex2sympy2's PERCENT_NUMBER (no space before \%)
    s = re.sub(r"(?<=\d),(?=\d{3})", "", s)  # "1,000" is one number
    if "\\sqrt[" not in s:
        s = s.replace("[", "(").replace("]", ")")  # [ ] are brackets, not the extended parser's intervals
    while s.startswith("{") and s.endswith("}") and _balanced(s[1:-1]):
        s = s[1:-1].strip()  # latex2sympy2 reads a braced group as its content
    if "=" in s:
        lhs, _, rhs = s.rpartition("=")
        if "=" in lhs or not _ASSIGNED.fullmatch(lhs):
            return None  # an equation between expressions: a list of solutions or an Eq, never a number
        s = rhs
    return s


def _balanced(s: str) -> bool:
    d = 0
    for c in s:
        d += (c == "{") - (c == "}")
        if d < 0:
            return False
    return d == 0


def _py_eval(node: ast.AST) -> Any:
    """Python's `eval` of sympy's printed expression, with the names of `math` as the official
    module has them (`from math import *`), refusing integer powers and factorials that run for minutes."""
    if isinstance(node, ast.Expression):
        return _py_eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and node.id in _MATH:
        return _MATH[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _py_eval(node.operand)
        return -v if isinstance(node.op, ast.USub) else +v
    if isinstance(node, ast.BinOp):
        a, b = _py_eval(node.left), _py_eval(node.right)
        op = type(node.op)
        if op is ast.Pow:
            if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b * math.log10(abs(a)) > 10_000:
                raise OverflowError("integer power too large to evaluate")
            return a**b
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.Div: lambda: a / b,
               ast.Mod: lambda: a % b, ast.FloorDiv: lambda: a // b}
        if op in ops:
            return ops[op]()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _MATH and not node.keywords:
        args = [_py_eval(a) for a in node.args]
        if node.func.id in ("factorial", "perm", "comb") and any(isinstance(a, int) and a > 5000 for a in args):
            raise OverflowError("factorial too large to evaluate")
        return _MATH[node.func.id](*args)
    if isinstance(node, ast.Compare):
        left, ok = _py_eval(node.left), True
        for op, comp in zip(node.ops, node.comparators):
            right = _py_eval(comp)
            cmp = {ast.Lt: left < right, ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right, ast.Eq: left == right,
                   ast.NotEq: left != right}.get(type(op))
            if cmp is None:
                raise ValueError("unsupported comparison")
            ok, left = ok and cmp, right
        return ok
    raise ValueError(f"not evaluable: {type(node).__name__}")


def _products_as_products(self, arr, i=0):
    """latex2sympy2_extended's `convert_postfix_list` without its mixed-number reading, which its
    `interpret_as_mixed_fractions=False` does not turn off (1.11): latex2sympy2 reads
    "2\\frac{1}{2}" and "2(3)" as products, the extended parser as 5/2 and 5."""
    import sympy

    if i >= len(arr):
        raise ValueError("index out of bounds")
    res = self.convert_postfix(arr[i])
    if isinstance(res, (sympy.Expr, sympy.MatrixBase)):
        if i == len(arr) - 1:
            return res
        rh = self.convert_postfix_list(arr, i + 1)
        if getattr(res, "is_Matrix", False) or getattr(rh, "is_Matrix", False):
            return self.mat_mul_flat(res, rh)
        return self.mul_flat(res, rh)
    if isinstance(res, list) and len(res) == 1:  # a differential "d x": the derivative of what follows
        if i == len(arr) - 1:
            raise ValueError("expected an expression for the derivative")
        return sympy.Derivative(self.convert_postfix_list(arr, i + 1), res[0])
    return res


def _value_worker(conn) -> None:
    import logging

    logging.disable(logging.WARNING)
    import sympy
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, _Latex2Sympy

    _Latex2Sympy.convert_postfix_list = _products_as_products

    config = ConversionConfig(interpret_as_mixed_fractions=False, interpret_simple_eq_as_assignment=True, lowercase_symbols=False)
    conn.send("ready")
    while True:
        s = conn.recv()
        try:
            printed = str(latex2sympy(s, normalization_config=None, conversion_config=config))
            if "\\exp" in s and "log(" not in printed.partition("exp(")[0]:
                # the extended parser leaves \exp(...) unevaluated where latex2sympy2's sympy evaluates it: \exp(\ln 5)
                # is 5 and \exp(1) is E (a NameError for eval: no value). Not `e^x` (latex2sympy2 reads `e` as a
                # symbol that eval takes from math) nor a log around it (\ln\exp(2): officially no value).
                printed = str(sympy.sympify(printed))
            v = _py_eval(ast.parse(printed, mode="eval"))
            out = v if isinstance(v, (int, float)) else None  # bool is int: round(True, 2) == 1, as officially
        except Exception:
            out = None
        conn.send(out)


class _ValueWorker:
    """latex2sympy in a worker process: a parse that runs past the time bound is killed with its worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_value_worker, args=(child,), daemon=True)
        self._proc.start()
        if not self._conn.poll(120) or self._conn.recv() != "ready":  # start-up (importing sympy) apart from the bound
            self._reset()  # not "no value": every answer needing one would silently score wrong
            raise RuntimeError("the MATH-V latex2sympy worker did not start (a spawned process re-imports the main module: "
                               "guard a script's top level with `if __name__ == '__main__':`)")

    def _reset(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(1)
        self._proc = None

    def __call__(self, s: str, timeout_s: float) -> int | float | None:
        with self._lock:
            try:
                if self._proc is None or not self._proc.is_alive():
                    self._start()
                self._conn.send(s)
                if self._conn.poll(timeout_s):
                    return self._conn.recv()
            except (OSError, EOFError):
                pass
            self._reset()
            return None


_WORKER = _ValueWorker()


@lru_cache(maxsize=8192)
def latex_value(s: str) -> int | float | None:
    """`round(eval(str(latex2sympy(s))), 2)` as the official `is_equal` computes it; None where
    that raises (no parse, a free symbol, a non-number) or where the guards refuse (departure 3)."""
    if len(s) > MAX_VALUE_CHARS:  # before any parse: a 4,400-digit number from a repetition loop is no value, not a crash
        return None
    if _PLAIN.fullmatch(s):
        v: Any = _plain_value(s)
    else:
        if brace_depth(s) > MAX_BRACE_DEPTH or _POWER_TOWER.search(s) or _BIG_FACTORIAL.search(s):
            return None
        form = _official_form(s)
        if form is None or not form.strip():
            return None
        if _PLAIN.fullmatch(form):
            v = _plain_value(form)
        else:
            v = _WORKER(form, PARSE_TIMEOUT_S)
            if v is None:
                return None
            if isinstance(v, bool):
                v = int(v)
            elif _FLOAT_RESULT.search(form):
                v = float(v)
            elif isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
                v = int(v)
    return round(v, 2)


def _plain_value(s: str) -> int | float:
    """latex2sympy2 reads a number as an exact Rational: "3.0" prints as 3 (eval: int), "4.8" as
    24/5 (eval: the float nearest 4.8, which float() gives too)."""
    f = Fraction(s)
    return int(f) if f.denominator == 1 else float(f)


def eval_tuple(s: str) -> str:
    """utils.py `eval_tuple`: "(x,y)" / "[x,y]" with each element replaced by its rounded value
    (elements with "infty" and "a", "-a" kept); `s` unchanged when any element has no value."""
    parts = s[1:-1].split(",")
    if len(s) < 2 or len(parts) < 2 or (s[0], s[-1]) not in (("(", ")"), ("[", "]")):
        return s
    out = []
    for p in parts:
        if "infty" in p or p in ("a", "-a"):
            out.append(p)
            continue
        v = latex_value(p)
        if v is None:
            return s
        try:
            out.append(str(v))
        except ValueError:  # an integer past Python's str() digit limit: officially an exception, so `s` is kept
            return s
    return s[0] + ",".join(out) + s[-1]


def is_equal(gold: str, answer: str) -> bool:
    """utils.py `is_equal` (symmetric): equal after lower-casing and stripping, or after
    `eval_tuple`, or equal values rounded to 2 decimals. Neither side is normalised further."""
    g, a = gold.lower(), answer.lower()
    if not g.replace(" ", "") or not a.replace(" ", ""):
        return False
    if g.strip() == a.strip():
        return True
    g, a = eval_tuple(g), eval_tuple(a)
    if g == a:
        return True
    va = latex_value(a)
    if va is None:
        return False
    vg = latex_value(g)
    return vg is not None and vg == va


def _option_text(item: EvalItem) -> str:
    """The ground truth's option text, raw ("" for free-form rows; departure 4 for malformed ones)."""
    k = ord(item.answer) - 65 if len(item.answer) == 1 else -1
    return item.options[k] if item.options and 0 <= k < len(item.options) else ""


def score(item: EvalItem, response: str | None) -> dict[str, Any]:
    """{"extracted", "correct"} for one response, as the official `evaluate`."""
    ans = extract(response)
    correct = is_equal(str(item.answer), ans) or is_equal(_option_text(item), ans)
    return {"extracted": ans, "correct": bool(correct)}


def aggregate(items: list[EvalItem], scores: list[float]) -> dict[str, Any]:
    """Accuracy overall and per subject (the official per-subject breakdown)."""
    from m2r.eval.metrics import GroupAccuracy

    acc = GroupAccuracy(sorted({str(it.meta.get("subject")) for it in items}))
    for it, s in zip(items, scores):
        acc.update(str(it.meta.get("subject")), s)
    out = acc.compute()
    return {"accuracy": out, "score": out["overall"]}
