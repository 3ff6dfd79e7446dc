"""The one card-number (PAN) detector: every entry (the API, the event stream, landing files)
asks it whether a text holds a card number, and masks with it what it keeps of a refused input.

A card number is a Luhn-valid run of 13-19 digits, written whole (sixteen digits in a row) or in
groups joined by a dot, a dash, a slash or any run of white space (``dddd dddd dddd dddd``,
``dddd.dddd.dddd.dddd``, ``dddd-dddddd-ddddd``, ``dddd/dddd/dddd/dddd``, tabs, no-break or
double spaces as pasted from a document), wherever it stands in a text (after ``ref 1234 ``,
``card:`` or ``pan=``). Invisible characters (zero-width spaces and joiners, the byte-order
mark) are removed before scanning: they hide nothing. Commas do not join groups: ``1,234,567``
is how amounts are written. It starts and ends at a group boundary: digits that are part of a
longer unbroken digit run are not one (a 20-digit partner id passes), nor are digits glued to
a letter (the digit run of a hex id or a hash; 0.3% of random UUIDs would otherwise be
refused; so ``card4111111111111111`` passes too, the price of not refusing ids). Among groups
joined by separators, every run of whole consecutive groups is a candidate (so a card number
after ``ref 1234`` is found although the 20 digits together are not one).

Digits are Unicode decimal digits (a card number in fullwidth digits is one too). A hex
hash can hold a Luhn-valid 13-digit run by chance (0.4% of random 64-hex keyed hashes do):
a well-formed keyed hash in ``card_hash`` is not scanned (``scanned``).

Cost: texts without 13 characters in a row from digits, white space, dot, dash, slash (nearly
all) are rejected by one regex search; a request's fields take a few microseconds
(benchmarks/pan.py).
"""

from __future__ import annotations

import re

MASK = "[card number masked]"
MIN_DIGITS, MAX_DIGITS = 13, 19

# Cheap gate (no backtracking): 13 characters in a row that could belong to a card number.
_GATE = re.compile(r"[\d\s./\-]{13}")
# Where the gate passes: the runs of those characters (maximal). An unbroken run of more than
# MAX_DIGITS digits (a 20-digit id) holds no card number; other runs are scanned.
_RUN = re.compile(r"[\d\s./\-]{13,}")
# A chain: digit groups joined by a dot, dash or slash, or by white space, not inside a longer
# digit run.
_CHAIN = re.compile(r"\d+(?:(?:[./\-]|\s+)\d+)*")
# Zero-width space, non-joiner, joiner, word joiner, byte-order mark: removed before scanning
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_GROUP = re.compile(r"\d+")
_KEYED_HASH = re.compile(r"[0-9a-f]{64}")


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every card number in ``text`` (they may overlap)."""
    found = []
    for chain in _CHAIN.finditer(text):
        if chain.end() - chain.start() < MIN_DIGITS:
            continue
        groups = [(g.start(), g.end()) for g in _GROUP.finditer(text, chain.start(), chain.end())]
        # A group glued to a letter is part of a token such as a hex id: it neither starts
        # nor ends a card number.
        first = 1 if chain.start() > 0 and text[chain.start() - 1].isalpha() else 0
        last = len(groups) - (1 if chain.end() < len(text) and text[chain.end()].isalpha() else 0)
        for i in range(first, last):
            digits = ""
            for j in range(i, last):
                digits += text[groups[j][0] : groups[j][1]]
                if len(digits) > MAX_DIGITS:
                    break
                if len(digits) >= MIN_DIGITS and _luhn(digits):
                    found.append((groups[i][0], groups[j][1]))
    return found


def scanned(field: str, value: str) -> bool:
    """Whether ``field``'s ``value`` is to be scanned: all but a well-formed card_hash."""
    return field != "card_hash" or _KEYED_HASH.fullmatch(value) is None


def pans(text: str | None) -> list[str]:
    """The digits of every card number in ``text``."""
    text = text and text.translate(_INVISIBLE)
    if not text or _GATE.search(text) is None:
        return []
    return [re.sub(r"\D", "", text[start:end]) for start, end in _spans(text)]


def find_pan(text: str | None) -> bool:
    """Whether ``text`` holds a card number anywhere."""
    text = text and text.translate(_INVISIBLE)
    if not text or _GATE.search(text) is None:
        return False
    if all(run.isdecimal() and len(run) > MAX_DIGITS for run in _RUN.findall(text)):
        return False  # only ids of more digits than a card number has (cheap; common)
    return bool(_spans(text))


def mask_pans(text: str | None) -> str | None:
    """``text`` with every card number replaced by ``MASK`` (no digit of it is kept: the last
    four of a card are still card data, and what is masked is stored for later reading;
    invisible characters go with the scan)."""
    text = text and text.translate(_INVISIBLE)
    if not text or _GATE.search(text) is None:
        return text
    spans = sorted(_spans(text))
    if not spans:
        return text
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out, at = [], 0
    for start, end in merged:
        out += [text[at:start], MASK]
        at = end
    out.append(text[at:])
    return "".join(out)
