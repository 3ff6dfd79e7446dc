"""The card-number detector (riskcore/pan.py): what it must find, what it must let pass, and
that masking leaves no card number behind."""

import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from riskcore.pan import MASK, find_pan, mask_pans


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    for check in "0123456789":
        digits = body + check
        total = 0
        for i, c in enumerate(reversed(digits)):
            d = int(c) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return digits
    raise AssertionError


# Public test numbers, written in pieces: the source holds no unbroken card number.
VISA, MASTERCARD, AMEX = (
    "4111" + "1111" * 3,
    "5500" + "0000" * 2 + "0004",
    "3782" + "822463" + "10005",
)

HITS = [
    VISA,
    MASTERCARD,
    AMEX,
    " ".join(["4111"] * 1 + ["1111"] * 3),
    ".".join(["4111"] + ["1111"] * 3),
    "-".join(["4111"] + ["1111"] * 3),
    "-".join(["3782", "822463", "10005"]),
    f"ref 1234 {VISA}",
    f"ref 1234 {VISA} 99",
    f"card:{VISA}",
    f"pan={VISA}",
    f"card_{VISA}",
    f"t-{VISA}",
    f"shop {' '.join(['4111'] + ['1111'] * 3)} berlin",
    VISA.translate({ord(c): 0xFF10 + int(c) for c in "0123456789"}),  # fullwidth digits
    luhn_complete("4" * 12),  # 13 digits
    luhn_complete("4" * 18),  # 19 digits
    f"{VISA}, {MASTERCARD}",
    # pasted from a document: any white space, slashes, invisible characters
    *(sep.join(["4111"] + ["1111"] * 3) for sep in ("  ", "\t", "\u00a0", "/")),
    "4111\u200b" + "1111" * 3,
    f"\ufeff{VISA}",
]

MISSES = [
    "",
    "4111" + "1111" * 2 + "1112",  # Luhn fails
    "12345678901234567890",  # a 20-digit partner id
    "0" + VISA + "000",  # part of a longer digit run
    VISA + "0000",
    luhn_complete("4" * 11),  # 12 digits
    luhn_complete("4" * 19),  # 20 digits
    "4111,1111,1111,1111",  # commas: how amounts are written, not card numbers
    "4111_1111_1111_1111",
    f"x{VISA}y",  # glued to letters: a hex id's digits
    f"{VISA}ce9",
    "3f2b9c1e-8a4d-4c2b-9f1e-2a7b8c9d0e1f",
    "2026-04-30T12:34:56Z",
    "129.90",
    "t-1001",
    "ab" * 32,
    "d-9",
    "+49 30 1234567",
]


@pytest.mark.parametrize("text", HITS)
def test_card_numbers_are_found_and_masked(text):
    assert find_pan(text)
    masked = mask_pans(text)
    assert MASK in masked
    assert not find_pan(masked)


@pytest.mark.parametrize("text", MISSES)
def test_other_numbers_pass(text):
    assert not find_pan(text)
    assert mask_pans(text) == text


bodies = st.text("0123456789", min_size=12, max_size=18)
separators = st.sampled_from(["", " ", ".", "-"])
texts = st.text(st.characters(codec="utf-8"), max_size=20)


@given(bodies, separators, st.integers(2, 6), texts, texts)
def test_any_card_number_is_found_anywhere(body, sep, group, before, after):
    pan = luhn_complete(body)
    written = sep.join(pan[i : i + group] for i in range(0, len(pan), group))
    before = before if not before or not before[-1].isalnum() else before + "/"
    after = after if not after or not after[0].isalnum() else "/" + after
    text = f"{before}{written}{after}"
    assert find_pan(text)
    assert not find_pan(mask_pans(text))
    assert pan not in mask_pans(text)


@given(st.text("0123456789", min_size=20, max_size=40), texts)
def test_long_digit_runs_pass(run, after):
    after = after if not after or not after[0].isdigit() else "/" + after
    assert not find_pan(f"id {run}{after}") or find_pan(after)


@given(st.text(max_size=60))
def test_masking_never_leaves_a_card_number(text):
    masked = mask_pans(text)
    assert not find_pan(masked)
    assert (masked == text) is (not find_pan(text))


def test_the_source_holds_no_card_number():
    """Test numbers are written in pieces (as above): a card number in the source would be
    copied into every clone, log and review tool that reads it. Every tracked file is read."""
    from riskcore.settings import PROJECT_ROOT

    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    found = []
    for name in filter(None, tracked):
        path = PROJECT_ROOT / name
        if name.endswith(".lock") or not path.is_file():  # the lock file: hashes, not text
            continue
        lines = path.read_text(errors="replace").splitlines()
        found += [f"{name}:{i}" for i, line in enumerate(lines, 1) if find_pan(line)]
    assert not found
