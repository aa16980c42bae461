"""mapping.columns: header synonyms, explicit mappings and name splitting, against real export header rows
and nameparser."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from typing import Any

import nameparser
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contact_import_pipeline.errors import ColumnMappingError
from contact_import_pipeline.mapping.columns import ColumnPlan, apply_plan, normalize_header, plan_columns
from contact_import_pipeline.mapping.phones import normalize_phones
from contact_import_pipeline.model import CONTACT_FIELDS
from contact_import_tests.helpers import EXPORTS

OUTPUT = [*list(CONTACT_FIELDS), "phone_raw", "country_raw"]


def read_export(name: str) -> tuple[list[str], pd.DataFrame]:
    with open(EXPORTS / name, newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    frame = pd.DataFrame(rows, columns=[str(i) for i in range(len(header))], dtype=str)
    return header, frame


def test_normalize_header_folds_case_punctuation_accents_and_width():
    assert normalize_header("E-mail Address") == "emailaddress"
    assert normalize_header(" phone_number ") == "phonenumber"
    assert normalize_header("Straße geschäftlich") == "strassegeschaftlich"
    assert normalize_header("Ｐｒéｎｏｍ") == "prenom"
    assert normalize_header("TEL;TYPE=CELL") == "teltypecell"


US_E164 = ["+12025550101", "+12025550102", "+12025550103"]
# (file, expected phone_raw, expected E.164): mobile columns win over other phone columns.
EXPORT_CASES = [
    ("google_old.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("google_new.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("outlook.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("outlook_web.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("hubspot.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("salesforce.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("mailchimp.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("zoho.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("pipedrive.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    ("vcard.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
    # German Outlook: country "Deutschland" makes national numbers German.
    (
        "outlook_de.csv",
        ["0151 23456789", "(030) 901820", "+1 202 555 0103"],
        ["+4915123456789", "+4930901820", "+12025550103"],
    ),
    ("snake_case.csv", ["(202) 555-0101", "202.555.0102", "+1 202 555 0103"], US_E164),
]


@pytest.mark.parametrize(("name", "phones", "expected"), EXPORT_CASES)
def test_export_maps_name_email_phone(name: str, phones: list[str], expected: list[str]):
    header, frame = read_export(name)
    out = apply_plan(frame, plan_columns(header, None, name))
    assert list(out.columns) == OUTPUT
    assert out["firstname"].tolist() == ["Ann", "Bob", "Cleo"]
    assert out["lastname"].tolist() == ["Lee", "Stone", "Park"]
    assert out["email"].tolist() == ["ann@example.com", "bob@example.com", "cleo@example.com"]
    assert out["phone_raw"].tolist() == phones
    e164, reasons, _ = normalize_phones(out["phone_raw"].tolist(), out["country_raw"].tolist(), "US")
    assert e164 == expected
    assert reasons == [None, None, None]


def test_outlook_address_and_country():
    header, frame = read_export("outlook.csv")
    plan = plan_columns(header, None, "outlook.csv")
    assert plan.phones[0] == header.index("Mobile Phone")
    assert plan.phones[1:] == sorted(plan.phones[1:])
    assert [header[i] for i in plan.phones] == [
        "Mobile Phone",
        "Primary Phone",
        "Home Phone",
        "Home Phone 2",
        "Company Main Phone",
        "Business Phone",
        "Business Phone 2",
        "Other Phone",
        "Car Phone",
    ]
    row = apply_plan(frame, plan).iloc[0]
    assert (row["st_address"], row["city"], row["state"], row["zip"], row["country_raw"]) == (
        "1 Main St",
        "Springfield",
        "IL",
        "62701",
        "United States of America",
    )


def test_german_outlook_plan():
    header, frame = read_export("outlook_de.csv")
    plan = plan_columns(header, None, "outlook_de.csv")
    named = {field: header[i] for field, i in plan.fields.items()}
    assert named == {
        "firstname": "Vorname",
        "lastname": "Nachname",
        "email": "E-Mail-Adresse",
        "st_address": "Straße geschäftlich",
        "city": "Ort geschäftlich",
        "state": "Region geschäftlich",
        "zip": "Postleitzahl geschäftlich",
    }
    assert header[plan.country] == "Land/Region geschäftlich"
    assert [header[i] for i in plan.phones] == [
        "Mobiltelefon",
        "Telefon geschäftlich",
        "Telefon geschäftlich 2",
        "Autotelefon",
        "Telefon Firma",
        "Telefon privat",
        "Telefon privat 2",
        "Weiteres Telefon",
        "Haupttelefon",
    ]
    assert apply_plan(frame, plan)["country_raw"].tolist() == ["Deutschland"] * 3


def test_hubspot_and_salesforce_crm_fields():
    header, frame = read_export("hubspot.csv")
    out = apply_plan(frame, plan_columns(header, None, "hubspot.csv"))
    assert out.loc[0, ["lead_status", "lead_source", "state", "zip"]].tolist() == [
        "New",
        "Offline Sources",
        "IL",
        "62701",
    ]
    header, frame = read_export("salesforce.csv")
    out = apply_plan(frame, plan_columns(header, None, "salesforce.csv"))
    assert out.loc[0, ["lead_status", "lead_source", "state", "zip", "country_raw"]].tolist() == [
        "Open - Not Contacted",
        "Web",
        "IL",
        "62701",
        "USA",
    ]


def test_french_and_spanish_headers():
    plan = plan_columns(["Prénom", "Nom", "Téléphone mobile", "Téléphone"], None, "fr.csv")
    assert plan == ColumnPlan(fields={"firstname": 0, "lastname": 1}, phones=[2, 3], country=None, full_name=None)
    plan = plan_columns(["Nombre", "Apellido", "Teléfono", "Móvil", "País"], None, "es.csv")
    assert plan == ColumnPlan(fields={"firstname": 0, "lastname": 1}, phones=[3, 2], country=4, full_name=None)


def test_phone_type_and_fax_columns_are_not_phones():
    header = ["Phone 1 - Type", "Phone 1 - Label", "Business Fax", "Pager", "Phone 1 - Value"]
    assert plan_columns(header, None, "g.csv").phones == [4]


def frame_of(*columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({str(i): c for i, c in enumerate(columns)}, dtype=str)


def test_duplicate_phone_headers_first_non_empty_wins():
    header = ["Name", "Phone", "Phone"]
    plan = plan_columns(header, None, "d.csv")
    assert plan.phones == [1, 2]
    frame = frame_of(["A B", "C D", "E F"], ["111", " ", ""], ["222", "333", ""])
    assert apply_plan(frame, plan)["phone_raw"].tolist() == ["111", "333", ""]


def test_mobile_first_then_file_order():
    header = ["Work Phone", "Home Phone", "Cell Phone", "Email"]
    plan = plan_columns(header, None, "m.csv")
    assert plan.phones == [2, 0, 1]
    frame = frame_of(["w1", "w2", ""], ["h1", "h2", "h3"], ["c1", "", ""], ["", "", ""])
    assert apply_plan(frame, plan)["phone_raw"].tolist() == ["c1", "w2", "h3"]


# A full name and its (first, last): titles dropped, middle names with the first name, suffixes with
# the last name, "Last, First" turned round.
FULL_NAMES = {
    "Dr. Ada Lovelace": ("Ada", "Lovelace"),
    "John Smith Jr.": ("John", "Smith Jr."),
    "Lovelace, Ada": ("Ada", "Lovelace"),
    "Mary Ann van der Berg": ("Mary Ann", "van der Berg"),
    "Mary Ann  Smith": ("Mary Ann", "Smith"),
    "Smith, John": ("John", "Smith"),
    " Lee ,  Ann Marie ": ("Ann Marie", "Lee"),
    "Prof. Dr. Hans Müller PhD": ("Hans", "Müller PhD"),
    "Mr Bean": ("", "Bean"),
    "Jean-Luc Picard": ("Jean-Luc", "Picard"),
    "Henry Ford II": ("Henry", "Ford II"),
    "Cher": ("Cher", ""),
    "Dr.": ("Dr.", ""),  # a title alone is still the only name the row has
    "": ("", ""),
}


def test_full_name_split_by_nameparser():
    plan = plan_columns(["Full Name", "Phone"], None, "n.csv")
    assert plan.full_name == 0 and plan.fields == {}
    frame = frame_of(list(FULL_NAMES), [str(i) for i in range(len(FULL_NAMES))])
    out = apply_plan(frame, plan)
    assert list(zip(out["firstname"], out["lastname"], strict=True)) == list(FULL_NAMES.values())


# Words of plain names: ordinary given and family names, and look-alikes of what nameparser treats
# specially (particles, suffixes, titles, roman numerals, initials, the dotless i).
_NAME_WORDS = (
    "Ann Lee Mary Smith Jean Picard Zoë Ørsted Łukasz Żółć Ng Ma Do Mac St Van Von Bin Di Al "
    "Dr Mr Jr Sr Esq PhD Md Ii Iv Vi Ix Xiv Liv I V X Q E Y ı İ And Of The Née Geb"
)
_PLAIN_WORDS = st.one_of(
    st.sampled_from(_NAME_WORDS.split()), st.text("abcdefghijklmnopqrstuvwxyzéøßı", min_size=1, max_size=6)
)


@st.composite
def plain_names(draw: st.DrawFn) -> str:
    words = draw(st.lists(_PLAIN_WORDS, min_size=1, max_size=5))
    cased = [draw(st.sampled_from([w, w.upper(), w.capitalize()])) for w in words]
    joined = [w + "-" + draw(_PLAIN_WORDS) if draw(st.integers(0, 9)) == 0 else w for w in cased]
    comma = draw(st.integers(0, len(joined) - 1))  # "Last, First" forms when > 0
    return ", ".join(part for part in (" ".join(joined[:comma]), " ".join(joined[comma:])) if part)


@settings(max_examples=300, deadline=None)
@given(st.lists(plain_names(), min_size=1, max_size=30))
def test_name_split_fast_path_equals_nameparser(names: list[str]) -> None:
    """Every name gets nameparser's reading, whether the Arrow fast path or nameparser split it."""
    plan = plan_columns(["Name", "Phone"], None, "n.csv")
    out = apply_plan(frame_of(names, ["1"] * len(names)), plan)
    expected = [_nameparser_split(name) for name in names]
    assert list(zip(out["firstname"], out["lastname"], strict=True)) == expected


def _nameparser_split(name: str) -> tuple[str, str]:
    """(given + middle, family + suffix) as nameparser reads the name."""
    parsed = nameparser.parse(name)
    first = " ".join(p for p in (parsed.given, parsed.middle) if p)
    last = " ".join(p for p in (parsed.family, parsed.suffix) if p)
    return (first, last) if first or last else (name, "")


def test_name_split_asks_nameparser_once_per_distinct_name_it_cannot_prove_plain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    parse = nameparser.parse

    def counted(name: str) -> nameparser.ParsedName:
        parsed.append(name)
        return parse(name)

    monkeypatch.setattr(nameparser, "parse", counted)
    names = ["Ann Lee", "Dr. Ada Lovelace", "Mary Ann Smith", "Dr. Ada Lovelace", "Lee-Smith, Ann", "Ann Van", ""]
    out = apply_plan(frame_of(names * 3, ["1"] * 21), plan_columns(["Name", "Phone"], None, "n.csv"))
    assert sorted(parsed) == ["Ann Van", "Dr. Ada Lovelace"]
    assert out["firstname"].tolist()[:7] == ["Ann", "Ada", "Mary Ann", "Ada", "Ann", "Ann", ""]
    assert out["lastname"].tolist()[:7] == ["Lee", "Lovelace", "Smith", "Lovelace", "Lee-Smith", "Van", ""]


def test_header_only_frame_with_a_name_column_gives_empty_columns():
    plan = plan_columns(["Name", "Phone"], None, "h.csv")
    out = apply_plan(frame_of([], []), plan)
    assert (len(out), list(out.columns)) == (0, OUTPUT)


def test_full_name_ignored_when_parts_present():
    header, _frame = read_export("pipedrive.csv")
    plan = plan_columns(header, None, "pipedrive.csv")
    assert header[plan.full_name] == "Person - Name"
    assert plan.fields["firstname"] == header.index("Person - First name")


def test_values_are_stripped_and_absent_fields_empty():
    plan = plan_columns(["email", "phone"], None, "s.csv")
    out = apply_plan(frame_of([" a@b.c ", "x"], [" 1 ", "2"]), plan)
    assert out.to_dict("list") == {
        **{field: ["", ""] for field in CONTACT_FIELDS},
        "email": ["a@b.c", "x"],
        "phone_raw": ["1", "2"],
        "country_raw": ["", ""],
    }
    assert list(out.columns) == OUTPUT


def test_explicit_mapping_overrides_synonyms():
    header = ["Phone", "Contact No", "Email", "Mail 2", "Where", "Who"]
    plan = plan_columns(
        header, {"phone": "Contact No", "email": "Mail 2", "country": "Where", "full_name": "Who"}, "x.csv"
    )
    assert plan == ColumnPlan(fields={"email": 3}, phones=[1], country=4, full_name=5)


def test_mapping_full_name_drops_synonym_name_parts():
    header = ["First Name", "Last Name", "Display", "Phone"]
    plan = plan_columns(header, {"full_name": "Display"}, "x.csv")
    assert plan.fields == {} and plan.full_name == 2
    plan = plan_columns(header, {"full_name": "Display", "lastname": "Last Name"}, "x.csv")
    assert plan.fields == {"lastname": 1}


def test_mapping_matches_header_by_normalized_name():
    plan = plan_columns(["Tel. Nr", "x"], {"phone": "tel nr"}, "x.csv")
    assert plan.phones == [0]


def test_mapping_unknown_field_is_an_error():
    with pytest.raises(ColumnMappingError) as error:
        plan_columns(["Phone"], {"telephone": "Phone"}, "bad.csv")
    message = str(error.value)
    assert message.startswith("bad.csv: column_mapping has unknown field 'telephone'")
    assert "firstname" in message


def test_mapping_missing_header_is_an_error_listing_headers():
    with pytest.raises(ColumnMappingError) as error:
        plan_columns(["Phone", "Email"], {"phone": "Mobile #"}, "bad.csv")
    assert str(error.value) == (
        "bad.csv: column_mapping 'phone': 'Mobile #' is not a header of this file; headers were: 'Phone', 'Email'"
    )


def test_no_phone_column_error():
    with pytest.raises(ColumnMappingError) as error:
        plan_columns(["Name", "Email", "Fax"], None, "nophone.csv")
    assert str(error.value) == (
        "nophone.csv: no phone column found; headers were: 'Name', 'Email', 'Fax'; "
        "map one with column_mapping={'phone': '<header>'}"
    )


# Each name form of the million-row frame and its (first, last) split.
NAME_SPLITS = {
    "Ann Lee": ("Ann", "Lee"),
    "Smith, John": ("John", "Smith"),
    "Mary Ann Smith": ("Mary Ann", "Smith"),
    "": ("", ""),
}
MOBILE, OTHER = "202 555 0101", "202 555 0102"


def name_frame(rows: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A Name, Mobile, Phone, Email frame; returns it, each row's name form and whether it has a mobile."""
    rng = np.random.default_rng(1)
    form = rng.integers(0, len(NAME_SPLITS), rows)
    has_mobile = rng.random(rows) < 0.5
    frame = pd.DataFrame(
        {
            "0": np.array(list(NAME_SPLITS), dtype=object)[form],
            "1": np.where(has_mobile, MOBILE, "").astype(object),
            "2": np.full(rows, OTHER, dtype=object),
            "3": np.full(rows, " x@y.z ", dtype=object),
        },
        dtype=str,
    )
    return frame, form, has_mobile


def python_calls(work: Callable[[], Any]) -> tuple[int, Any]:
    """How many Python functions run while ``work`` does (compiled code, Arrow's kernels, is not
    counted), and its result."""
    calls = 0

    def count(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    sys.setprofile(count)
    try:
        result = work()
    finally:
        sys.setprofile(None)
    return calls, result


def test_apply_plan_million_rows_is_vectorised_and_exact():
    """A million rows come out exactly right, and the Python work does not grow with them beyond one
    call per row: pandas runs the name split's ``\\s+`` in Python's ``re`` (RE2's ``\\s`` is not
    Python's), one call a name. Anything else row by row fails this, however fast the machine."""
    plan = plan_columns(["Name", "Mobile", "Phone", "Email"], None, "big.csv")
    small_calls, _ = python_calls(lambda: apply_plan(name_frame(1_000)[0], plan))
    frame, form, has_mobile = name_frame(1_000_000)
    big_calls, out = python_calls(lambda: apply_plan(frame, plan))
    assert (big_calls - small_calls) / (1_000_000 - 1_000) <= 1, (small_calls, big_calls)
    firsts, lasts = (np.array(part, dtype=object) for part in zip(*NAME_SPLITS.values(), strict=True))
    assert len(out) == 1_000_000
    assert (out["firstname"].to_numpy(dtype=object) == firsts[form]).all()
    assert (out["lastname"].to_numpy(dtype=object) == lasts[form]).all()
    assert (out["phone_raw"].to_numpy(dtype=object) == np.where(has_mobile, MOBILE, OTHER)).all()
    assert out["email"].eq("x@y.z").all()
