"""Answer extraction from a response. Two readers:

**RL (`answer_content`, strict by default)**: what rewards, Eq. 6's p and the difficulty scores
read. Only a well-formed answer counts: one `<think>` closed by one `</think>`, then one
`<answer>...</answer>`; inside it exactly one balanced, non-empty `\\boxed{}` (mode `strict`), or
the whole span with at most one box (mode `tagged`). Nothing outside the answer span is read, and
there are no fallbacks: prose, an unclosed think, a cut-off or unbalanced box, several boxes all
give no answer. Mode `lenient` is `extract_answer` below (for ablations only).

**Benchmarks (`extract_answer`, lenient)**, for scorers whose official code is lenient, in a
fixed order of preference:

1. the text after the last `</think>` (the reasoning is never graded);
2. within it, the content of the last `<answer>...</answer>` (an unclosed last `<answer>` runs to
   the end); an empty answer is no answer;
3. within that, the content of the last balanced `\\boxed{...}`; an empty box is no answer;
4. fallbacks, when there is no box: "the answer is X" (last occurrence), then the last number.

Every step is linear in the length of the text, so a megabyte of braces costs milliseconds.
"""

from __future__ import annotations

import math
import re

MAX_CHARS = 200_000  # only the tail of longer responses is read: the answer is at the end
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*([^\n]{1,200}?)\s*(?:\.\s*$|\.\s|\n|$)", re.I)
_NUMBER = re.compile(r"-?(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")  # `.5` is 0.5, not 5


def last_boxed(text: str) -> str | None:
    """Content of the last balanced `\\boxed{...}` (or `\\fbox{...}`) among the last 8, None if there is none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    for _ in range(8):  # a few unbalanced boxes are skipped; thousands would make this quadratic
        if start == -1:
            break
        i = text.index("{", start) + 1
        depth, j = 1, i
        while j < len(text) and depth:
            c = text[j]
            depth += (c == "{") - (c == "}")
            j += 1
        if depth == 0:
            return text[i : j - 1]
        # Unbalanced: try the box before this one.
        start = max(text.rfind("\\boxed{", 0, start), text.rfind("\\fbox{", 0, start))
    return None


def graded_text(text: str) -> str:
    """The lenient graded part of a response: the text after the last `</think>`, inside the last
    `<answer>` when there is one (an unclosed last `<answer>` runs to the end)."""
    k = text.rfind("</think>")
    if k != -1:
        text = text[k + len("</think>") :]
    a = text.rfind("<answer>")
    if a != -1:
        inner = text[a + len("<answer>") :]
        e = inner.find("</answer>")
        text = inner if e == -1 else inner[:e]
    return text


def answer_span(text: str) -> str | None:
    """The graded part of a response (steps 1-2), or None when the answer tag is empty."""
    text = text[-MAX_CHARS:]
    span = graded_text(text)
    return span if span.strip() or "<answer>" not in text else None


def extract_answer(text: str) -> str | None:
    """The final answer of a response as a string, or None when it gives none."""
    if not isinstance(text, str):
        return None
    span = answer_span(text)
    if span is None:
        return None
    boxed = last_boxed(span)
    if boxed is not None:
        return boxed.strip() or None
    m = None
    for m in _ANSWER_IS.finditer(span[-5000:]):
        pass
    if m is not None and m.group(1).strip():
        return m.group(1).strip()
    nums = _NUMBER.findall(span[-5000:])
    if nums:
        return nums[-1]
    stripped = span.strip()
    return stripped if stripped and len(stripped) <= 200 else None


EXTRACTION_MODES = ("strict", "tagged", "lenient")
_BOX_CMD = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")  # `\fbox1` is a box to math-verify too


def answer_content(text: str, mode: str = "strict") -> str | None:
    """The answer an RL accuracy function grades (see the module docstring), or None."""
    if mode == "lenient":
        return extract_answer(text)
    if mode not in EXTRACTION_MODES:
        raise ValueError(f"answer extraction mode {mode!r}: choose one of {EXTRACTION_MODES} (reward.extraction)")
    if not isinstance(text, str) or len(text) > MAX_CHARS:  # longer than any rollout we generate: not well formed
        return None
    tags = [text.find(t) for t in ("<think>", "</think>", "<answer>", "</answer>")]
    if any(text.count(t) != 1 for t in ("<think>", "</think>", "<answer>", "</answer>")) or tags != sorted(tags):
        return None
    span = text[tags[2] + len("<answer>") : tags[3]]
    boxes = len(_BOX_CMD.findall(span))
    if boxes > 1:  # several boxed answers: which one is meant is a guess
        return None
    if boxes == 1:
        start = _BOX_CMD.search(span).start()
        inner = last_boxed(span[start:])
        if inner is None or not span[start:].startswith(("\\boxed{", "\\fbox{")):  # cut off, unbalanced, or `\boxed 3`
            return None
        return inner.strip() or None
    if mode == "strict":
        return None
    return span.strip() or None


# Units a number may carry (they are not checked against the gold's): a whitelist, so that a word
# that hedges in any language ("3 ou quatre", "3 unsure") is not taken for a unit.
UNITS = set("""
mm cm dm m km in inch inches ft foot feet yd yard yards mi mile miles meter meters metre metres millimeter millimeters millimetre
millimetres centimeter centimeters centimetre centimetres kilometer kilometers kilometre kilometres nm um micron microns
sq square cubic mg g kg t gram grams kilogram kilograms lb lbs pound pounds oz ounce ounces ton tons tonne tonnes
s sec secs second seconds min mins minute minutes h hr hrs hour hours day days week weeks month months year years yr yrs ms
l ml cl liter liters litre litres milliliter milliliters millilitre millilitres gal gallon gallons cup cups
dollar dollars cent cents usd eur euro euros yuan rmb yen pence
deg degree degrees rad radian radians percent pct
unit units item items object objects piece pieces people person persons times point points pixel pixels px
kmh mph kph w kw v a hz khz mhz n j pa kpa
""".split())
_UNIT_TOKEN = r"(?:[A-Za-z]+\.?(?:\^\{?[23]\}?|²|³)?(?:/[A-Za-z]+(?:\^\{?[23]\}?|²|³)?)?)"
_DIGITS = r"\d+(?:\.\d+)?"
_STRICT_NUMBER = re.compile(
    r"(?P<sign>[-+]?)\s*(?:(?P<frac>\\[dt]?frac\s*(?:\{\s*(?P<fs>[-+]?)\s*(?P<fn>" + _DIGITS + r")\s*\}|(?P<fn1>\d))"
    r"\s*(?:\{\s*(?P<fd>" + _DIGITS + r")\s*\}|(?P<fd1>\d)))"
    r"|(?P<sn>" + _DIGITS + r")\s*/\s*(?P<sd>" + _DIGITS + r")"
    r"|(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)(?P<exp>[eE][-+]?\d{1,3})?"
    r"(?:\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*(?:\{\s*(?P<p10b>[-+]?\d{1,3})\s*\}|(?P<p10>[-+]?\d{1,3})))?)"
    r"\s*(?P<unit>%|°|" + _UNIT_TOKEN + r"(?:\s+" + _UNIT_TOKEN + r")?)?"
)
WRAPPER = re.compile(r"\\(?:text|mathrm|mbox|textrm|textbf|mathbf|boldsymbol|bm|operatorname|textit|mathit)\s*\{([^{}]*)\}")


def unwrap_latex(s: str) -> str:
    """`\\text{...}`, `\\mathbf{...}` and the like replaced by their content, nested up to 3 deep."""
    for _ in range(3):
        s = WRAPPER.sub(r"\1", s)
    return s


def _is_unit(unit: str) -> bool:
    if unit in ("%", "°"):
        return True
    for token in re.split(r"[\s/]+", unit.lower()):
        word = re.sub(r"(?:\^\{?[23]\}?|²|³|\.)$", "", token).rstrip(".")
        if word and word not in UNITS:
            return False
    return True


def strict_number(s: str | None) -> float | None:
    """One number, and nothing else but a unit from `UNITS`: `3`, `-1,234.5`, `12{,}000`, `45%`,
    `\\frac{3}{4}`, `\\frac12`, `3/4`, `1.2e3`, `1.2 \\times 10^{3}`, `2.1 m^2`, `3 km/h`,
    `\\text{3.5 meters}`, `\\mathbf{3}`, `90^\\circ`. Anything else is None, never cut to its first
    number: `3^{4}`, `3 or 4`, `3 ou quatre`, `3-4`, `about 3`, `x = 3`, `3 \\pm 1`."""
    if s is None or len(s) > 200:
        return None
    s = unwrap_latex(s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree", "°", s)
    s = s.replace("{,}", ",").replace("\u2212", "-").replace("\\%", "%").replace("\\$", "").replace("$", "")
    s = re.sub(r"\\[,;:! ]|\\q?quad|~", " ", s).strip()
    while s.startswith("{") and s.endswith("}") and last_boxed("\\boxed" + s) == s[1:-1]:  # {3}: one group around it all
        s = s[1:-1].strip()
    m = _STRICT_NUMBER.fullmatch(s)
    if not m or (m.group("unit") and not _is_unit(m.group("unit"))):
        return None
    sign = -1.0 if m.group("sign") == "-" else 1.0
    try:
        if m.group("frac"):
            num, den = float(m.group("fn") or m.group("fn1")), float(m.group("fd") or m.group("fd1"))
            sign *= -1.0 if m.group("fs") == "-" else 1.0
            x = num / den if den else None
        elif m.group("sn"):
            num, den = float(m.group("sn")), float(m.group("sd"))
            x = num / den if den else None
        else:
            x = float(m.group("num").replace(",", "") + (m.group("exp") or ""))
            p10 = m.group("p10b") or m.group("p10")
            x = x * 10.0 ** int(p10) if p10 else x
    except (ValueError, OverflowError):
        return None
    return sign * x if x is not None and math.isfinite(x) else None


def parse_number(s: str | None) -> float | None:
    """A float from an extracted answer: `1,234.5`, `\\text{3 m}`, `45%`, `\\frac{1}{2}`, `2.1 m^2`; None if none."""
    if s is None:
        return None
    s = s[:500]
    fr = re.fullmatch(r"\s*(-?)\\d?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}\s*", s)
    if fr:
        den = float(fr.group(3))
        return None if den == 0 else (-1 if fr.group(1) else 1) * float(fr.group(2)) / den
    s = re.sub(r"\\(text|mathrm|mbox)\{([^{}]*)\}", r"\2", s)
    nums = _NUMBER.findall(s)
    if len(nums) != 1:
        # "2.1 m^2" has one number before the unit's exponent: take the first if the rest is a unit power
        # (letters before the caret: `3^{4}` is a power of the number, not a unit, and is no number).
        if len(nums) == 2 and re.search(r"[A-Za-z]\s*\^\{?\s*" + re.escape(nums[1]) + r"\s*\}?\s*$", s):
            nums = nums[:1]
        else:
            return None
    try:
        x = float(nums[0].replace(",", ""))
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None
