"""mapping.phones: E.164 normalization with exact outputs and reasons; and mapping.nanp, the NANP
fast path, against plain phonenumbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contact_import_pipeline.mapping import phones
from contact_import_pipeline.mapping.nanp import key_depths, nanp_fast
from contact_import_pipeline.mapping.phones import (
    PHONE_CHUNK_ROWS,
    is_valid_region,
    normalize_phone,
    normalize_phone_column,
    normalize_phones,
    region_for_country,
)


def prepared(raw: str) -> str:
    """The preparation the pipeline documents before asking phonenumbers: trimmed, a leading 00
    read as + (the NANP-shaped inputs below are ASCII, so NFKC changes nothing)."""
    text = raw.strip()
    return "+" + text[2:] if text.startswith("00") else text


def plain(raw: str, region: str) -> str | None:
    """What phonenumbers alone says: parse, is_valid_number, format_number as E.164."""
    try:
        number = phonenumbers.parse(prepared(raw), region)
    except phonenumbers.NumberParseException:
        return None
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        if phonenumbers.is_valid_number(number)
        else None
    )


def fast_path(batch: list[str], region: str) -> tuple[list[int], list[str | None]]:
    """``nanp_fast`` alone over ``batch``: the rows it decided, and its answer for each of them."""
    result = np.full(len(batch), None, dtype=object)
    decided = nanp_fast(
        pa.array([prepared(raw) for raw in batch], type=pa.string()),
        np.full(len(batch), region, dtype=object),
        np.zeros(len(batch), dtype=bool),
        result,
    )
    rows = np.flatnonzero(decided).tolist()
    return rows, [result[i] for i in rows]


CASES = [
    ("(202) 555-0123", "US", "+12025550123"),
    ("202.555.0123", "US", "+12025550123"),
    ("202-555-0123", "US", "+12025550123"),
    ("2025550123", "US", "+12025550123"),
    ("1-202-555-0123", "US", "+12025550123"),
    ("+1 202 555 0123", "DE", "+12025550123"),
    ("+12025550123", "US", "+12025550123"),
    ("001 202 555 0123", "US", "+12025550123"),
    ("  (202) 555-0123  ", "US", "+12025550123"),
    ("202-555-0123 x12", "US", "+12025550123"),
    ("202-555-0123 ext. 5", "US", "+12025550123"),
    ("＋１ ２０２ ５５５ ０１２３", "US", "+12025550123"),
    ("(416) 555-0123", "CA", "+14165550123"),
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("0044 20 7946 0958", "US", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("07400 123456", "GB", "+447400123456"),
    ("030 901820", "DE", "+4930901820"),
    ("+49 (0)30 901820", "US", "+4930901820"),
    ("0151 23456789", "DE", "+4915123456789"),
    ("55 1234 5678", "MX", "+525512345678"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("+33 6 12 34 56 78", "US", "+33612345678"),
    ("555-0100", "US", None),
    ("555-123-4567", "US", None),
    ("123", "US", None),
    ("999-999-9999", "US", None),
    ("1.20255501E+10", "US", None),
    ("2.0255501e10", "US", None),
    ("call me", "US", None),
    ("030 901820", "US", None),
]


@pytest.mark.parametrize(("raw", "region", "expected"), CASES)
def test_normalize_phone(raw: str, region: str, expected: str | None):
    assert normalize_phone(raw, region) == expected


def test_normalize_phones_matches_single_and_gives_reasons():
    raw = [c[0] for c in CASES]
    e164, reasons, others = normalize_phones(raw, [c[1] for c in CASES], "XX")
    assert e164 == [c[2] for c in CASES]
    assert reasons == [None if c[2] else "invalid_phone" for c in CASES]
    assert others == {}


@pytest.mark.parametrize("empty", ["", "  ", "NULL", "null", "N/A", "NA", "none", "-", "\u3000"])
def test_missing_phone(empty: str):
    assert normalize_phone(empty, "US") is None
    assert normalize_phones([empty], [""], "US") == ([None], ["missing_phone"], {})


def test_country_column_by_name_and_iso_code_overrides_default_region():
    raw = [
        "030 901820",
        "030 901820",
        "030 901820",
        "020 7946 0958",
        "020 7946 0958",
        "(202) 555-0123",
        "(202) 555-0123",
    ]
    countries = ["Germany", "de", "Deutschland", "UK", "United Kingdom", "", "Atlantis"]
    e164, reasons, _ = normalize_phones(raw, countries, "US")
    assert e164 == ["+4930901820"] * 3 + ["+442079460958"] * 2 + ["+12025550123"] * 2
    assert reasons == [None] * 7
    assert normalize_phones(["(202) 555-0123"], ["gb"], "US") == ([None], ["invalid_phone"], {})


def test_region_for_country():
    assert [
        region_for_country(v)
        for v in [
            "US",
            "us",
            "United States",
            "U.S.A.",
            "Deutschland",
            "Germany",
            "UK",
            "United Kingdom",
            "gb",
            "México",
            "Atlantis",
            "",
            "  ",
        ]
    ] == ["US", "US", "US", "US", "DE", "DE", "GB", "GB", "GB", "MX", None, None, None]


def test_is_valid_region():
    assert is_valid_region("US") and is_valid_region("DE")
    assert not is_valid_region("us") and not is_valid_region("XX") and not is_valid_region("")


def test_duplicates_share_one_answer_and_lengths_must_match():
    e164, reasons, _ = normalize_phones(["202 555 0123"] * 3 + ["x"] * 2, [""] * 5, "US")
    assert e164 == ["+12025550123"] * 3 + [None] * 2
    assert reasons == [None] * 3 + ["invalid_phone"] * 2
    with pytest.raises(ValueError):
        normalize_phones(["1"], [], "US")


def test_nanp_key_depths_cover_every_area_code():
    depths = key_depths()
    assert len(depths) == 1000
    assert set(depths.values()) <= {3, 4, 5, 6, 7}
    assert depths["202"] == 4 and depths["876"] == 7


# NANP-shaped inputs: every area/exchange digit pattern, including 555, N11, 9xx, 0/1 leads.
_digits = st.text("0123456789", min_size=1, max_size=1)
_area = st.one_of(
    st.sampled_from(
        ["202", "555", "211", "911", "976", "999", "246", "876", "658", "268", "809", "416", "800", "900", "012", "123"]
    ),
    st.text("0123456789", min_size=3, max_size=3),
)
_exchange = st.one_of(
    st.sampled_from(["555", "211", "911", "012", "123", "976"]), st.text("0123456789", min_size=3, max_size=3)
)
_line = st.text("0123456789", min_size=4, max_size=4)
_sep = st.sampled_from(["", " ", "-", ".", " - ", "  "])
_lead = st.sampled_from(["", "1", "+1", "001", "1 ", "+1 ", "+1-", "1-", "(", "[", "+"])
# Round and square brackets around the area code, also unmatched (phonenumbers ignores both kinds).
_brackets = st.sampled_from([("(", ")"), ("[", "]"), ("(", "]"), ("[", ")"), ("(", ""), ("", "]"), ("((", "))")])


@st.composite
def nanp_like(draw) -> str:
    area = draw(_area)
    if draw(st.booleans()):
        opening, closing = draw(_brackets)
        area = f"{opening}{area}{closing}"
    return draw(_lead) + draw(_sep) + area + draw(_sep) + draw(_exchange) + draw(_sep) + draw(_line)


@settings(max_examples=300, deadline=None)
@given(st.lists(nanp_like(), min_size=1, max_size=40), st.sampled_from(["US", "CA", "GB", "DE"]))
def test_fast_path_equals_phonenumbers(numbers: list[str], region: str) -> None:
    # Share prefixes inside a batch so cached answers are reused for other suffixes.
    batch = numbers + [n[:-4] + n[-4:][::-1] for n in numbers]
    expected = [plain(n, region) for n in batch]
    rows, answers = fast_path(batch, region)
    assert answers == [expected[i] for i in rows]
    e164, _, _ = normalize_phones(batch, [""] * len(batch), region)
    assert e164 == expected


def test_fast_path_decides_every_nanp_row_as_phonenumbers_for_every_area_code(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every area code × every exchange lead digit, two line numbers each, in one batch of 20,000.
    batch = [f"({a:03d}) {x}{a % 10}{x} {line}" for a in range(1000) for x in range(10) for line in ("0123", "9876")]
    expected = [plain(raw, "US") for raw in batch]
    assert sum(e is not None for e in expected) > 5000
    # The fast path decides every row whose area code may exist (2xx-9xx), each as phonenumbers does.
    rows, answers = fast_path(batch, "US")
    assert rows == list(range(200 * 20, len(batch)))
    assert answers == expected[200 * 20 :]

    parsed: list[str] = []
    parse = phonenumbers.parse

    def counted_parse(text: str, region: str, *args: Any, **kwargs: Any) -> phonenumbers.PhoneNumber:
        parsed.append(text)
        return parse(text, region, *args, **kwargs)

    monkeypatch.setattr(phonenumbers, "parse", counted_parse)
    e164, _, _ = normalize_phones(batch, [""] * len(batch), "US")
    assert e164 == expected
    # phonenumbers parsed only the rows the fast path left: the 4,000 with area codes 0xx and 1xx.
    assert parsed == batch[: 200 * 20]


def test_phone_column_in_parallel_chunks_equals_one_call():
    """Over several chunks (worker processes on a multi-core machine) the answers and their order
    are those of one normalize_phones call over the whole column."""
    kinds = [
        "(202) 736-2291",
        "+44 20 7946 0958",
        "call me",
        "",
        "0049 30 901820",
        "[876] 555 0199",
        "n/a",
        "(202) 555-0199 / (202) 736-2291",
    ]
    raw = [
        f"{kinds[i % len(kinds)][:-2]}{i % 97:02d}" if kinds[i % len(kinds)][-2:].isdigit() else kinds[i % len(kinds)]
        for i in range(2 * PHONE_CHUNK_ROWS + 123)
    ]
    countries = ["" if i % 5 else "Germany" for i in range(len(raw))]
    e164, reasons, others = normalize_phone_column(pd.Series(raw, dtype="str"), pd.Series(countries, dtype="str"), "US")
    expected = normalize_phones(raw, countries, "US")
    assert [p for chunk in e164 for p in chunk.to_pylist()] == expected[0]
    assert reasons.tolist() == expected[1]
    assert others == expected[2]
    assert len(e164) == 3 and len(set(expected[1])) == 3  # 3 chunks; valid, invalid and missing rows
    assert len(others) == len(raw) // len(kinds)  # every multi-number row, whichever chunk held it
    assert others[2 * PHONE_CHUNK_ROWS + 7] == [f"+120273622{(2 * PHONE_CHUNK_ROWS + 7) % 97:02d}"]


# A cell listing several numbers: (cell, region, phone, other phones).
SEVERAL = [
    ("(415) 555-2671 / (415) 555-2672", "US", "+14155552671", ["+14155552672"]),
    ("415 555 2674; 415 555 2675", "US", "+14155552674", ["+14155552675"]),
    ("415 555 2671 or 415 555 2672", "US", "+14155552671", ["+14155552672"]),
    ("415 555 2671 OR +1 415 555 2672", "US", "+14155552671", ["+14155552672"]),
    ("415 555 2671 | 415 555 2672 | 415 555 2673", "US", "+14155552671", ["+14155552672", "+14155552673"]),
    ("415 555 2671\n415 555 2672", "US", "+14155552671", ["+14155552672"]),
    ("415 555 2671, 415 555 2672", "US", "+14155552671", ["+14155552672"]),
    ("4155552671/4155552672", "US", "+14155552671", ["+14155552672"]),
    ("555-0100 / 415 555 2672", "US", "+14155552672", []),  # an invalid first part: the second is the phone
    ("12345 or 415 555 2672", "US", "+14155552672", []),
    ("415-555-2671 ext 3, 415-555-2672", "US", "+14155552671", ["+14155552672"]),
    ("415 555 2672; 415 555 2671; 415-555-2672; 415 555 2671", "US", "+14155552672", ["+14155552671"]),
    ("+44 20 7946 0958 or 0151 23456789", "DE", "+442079460958", ["+4915123456789"]),
    ("030/901820 / 030/901821", "DE", "+4930901820", ["+4930901821"]),  # slashes inside each number
    ("0049 30 901820; 00 1 415 555 2671", "US", "+4930901820", ["+14155552671"]),
]


@pytest.mark.parametrize(("cell", "region", "phone", "others"), SEVERAL)
def test_cell_listing_several_numbers_gives_the_first_valid_one_and_keeps_the_others(
    cell: str, region: str, phone: str, others: list[str]
) -> None:
    assert normalize_phones([cell], [""], region) == ([phone], [None], {0: others})


@pytest.mark.parametrize(
    "cell", ["call me / later", "555-0100; 555-0101", "N/A; n/a", "415,555,2671", "1.20255501E+10 / 12"]
)
def test_cell_with_no_valid_part_is_an_invalid_phone(cell: str) -> None:
    assert normalize_phones([cell], [""], "US") == ([None], ["invalid_phone"], {})


@pytest.mark.parametrize(
    ("cell", "phone"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("415.555.2671", "+14155552671"),
        ("415-555-2671 ext 3", "+14155552671"),
        ("415-555-2671,,123", "+14155552671"),  # a pause and an extension, not a second number
        ("n/a", None),
    ],
)
def test_separator_inside_one_number_does_not_split_it(cell: str, phone: str | None) -> None:
    e164, _, others = normalize_phones([cell], [""], "US")
    assert (e164, others) == ([phone], {})
    assert e164 == [plain(cell, "US")] or cell == "n/a"


def test_only_failed_cells_holding_a_separator_are_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Valid cells and invalid cells without a separator never reach the split (rows by position)."""
    split: list[str] = []
    numbers_in = phones._numbers_in

    def counted(text: str, region: str, level: int = 0) -> list[str]:
        if level == 0:
            split.append(text)
        return numbers_in(text, region, level)

    monkeypatch.setattr(phones, "_numbers_in", counted)
    cells = [
        "(202) 555-0123",
        "call me",
        "202 555 0123 / 202 555 0124",
        "",
        "n/a",
        "x / y",
        "202 555 0123 / 202 555 0124",
    ]
    e164, reasons, others = normalize_phones(cells, [""] * len(cells), "US")
    assert split == ["202 555 0123 / 202 555 0124", "x / y"]  # each distinct cell once
    assert e164 == ["+12025550123", None, "+12025550123", None, None, None, "+12025550123"]
    assert reasons == [None, "invalid_phone", None, "missing_phone", "missing_phone", "invalid_phone", None]
    assert others == {2: ["+12025550124"], 6: ["+12025550124"]}
