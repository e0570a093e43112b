"""Answer extraction from a response, in a fixed order of preference:

1. the text after the last `</think>` (the reasoning is never graded);
2. within it, the content of the last `<answer>...</answer>` (an unclosed last `<answer>` runs to
   the end); an empty answer is no answer;
3. within that, the content of the last balanced `\\boxed{...}`; an empty box is no answer;
4. fallbacks, when there is no box: "the answer is X" (last occurrence), then the last number.

Every step is linear in the length of the text, so a megabyte of braces costs milliseconds.
"""

from __future__ import annotations

import re

MAX_CHARS = 200_000  # only the tail of longer responses is read: the answer is at the end
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*([^\n]{1,200}?)\s*(?:\.\s*$|\.\s|\n|$)", re.I)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")


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


def answer_span(text: str) -> str | None:
    """The graded part of a response (steps 1-2), or None when the answer tag is empty."""
    text = text[-MAX_CHARS:]
    k = text.rfind("</think>")
    if k != -1:
        text = text[k + len("</think>") :]
    a = text.rfind("<answer>")
    if a != -1:
        inner = text[a + len("<answer>") :]
        e = inner.find("</answer>")
        inner = inner if e == -1 else inner[:e]
        return inner if inner.strip() else None
    return text


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
        # "2.1 m^2" has one number before the unit's exponent: take the first if the rest is a unit power.
        if len(nums) == 2 and re.search(r"\^\{?\s*" + re.escape(nums[1]) + r"\s*\}?\s*$", s):
            nums = nums[:1]
        else:
            return None
    try:
        x = float(nums[0].replace(",", ""))
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None
