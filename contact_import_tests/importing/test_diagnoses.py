"""importing.diagnoses: each diagnosis fires on a file crafted to need it, with its numbers, and
stays silent on every real export fixture and on the benchmark's generated file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.generate import generate
from contact_import_pipeline.defs.config import FileImport
from contact_import_pipeline.importing import diagnoses, stages
from contact_import_pipeline.importing.options import resolve_options
from contact_import_pipeline.reading.csv_file import read_csv_bytes
from contact_import_tests.helpers import EXPORTS, csv_bytes, person

HEADER = ["First Name", "Last Name", "Email", "Phone"]
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def normalized(data: bytes, **options: Any) -> stages.NormalizedImport:
    key = "ws1/imports/file.csv"
    resolved = resolve_options(FileImport(key=key, import_tag="t", **options), {}, STARTED)
    raw = stages.RawImport(f"run:{key}", 0, resolved, key, read_csv_bytes(data, key))
    return stages.normalize(raw)


def codes(item: stages.NormalizedImport) -> list[str]:
    return [d.code for d in diagnoses.of_normalized(item)]


def uk_mobile(i: int) -> str:
    return f"07911 {123000 + i}"


def test_uk_numbers_in_a_us_workspace_name_gb_and_the_rows_it_saves() -> None:
    rows = [["A", "B", "", uk_mobile(i)] for i in range(900)] + [person(i) for i in range(100)]
    rows[5][3] = "0791"  # invalid everywhere
    (found,) = diagnoses.of_normalized(normalized(csv_bytes(HEADER, rows)))
    assert found.as_dict() == {
        "code": "default_region",
        "message": "899 of 900 invalid phones are valid GB numbers: set default_region=GB (--region GB) "
        "and import the file again",
        "numbers": {
            "invalid_phones": 900,
            "valid_in_region": 899,
            "region": "GB",
            "default_region": "US",
            "estimated": 0,
        },
    }
    # With the region it names, the rows import and the diagnosis is silent.
    fixed = normalized(csv_bytes(HEADER, rows), default_region="GB")
    assert codes(fixed) == []


@pytest.mark.parametrize(
    "cell",
    [
        "555 {i:04d}",  # US local numbers without area code: valid 7-digit numbers in DE
        "123-456-{i:04d}",  # placeholders: valid in GB, KR, IN, BR and AT
        "415 555 {i:03d}",  # a digit short: valid 9-digit numbers in FR
    ],
)
def test_short_or_made_up_us_numbers_name_no_region(cell: str) -> None:
    """Valid somewhere is not enough: the numbers must be written as national numbers of that region."""
    rows = [["A", "B", "", cell.format(i=i)] for i in range(200)]
    assert codes(normalized(csv_bytes(HEADER, rows))) == []


def test_a_large_file_gets_an_estimate_from_a_fixed_sample() -> None:
    rows = [["A", "B", "", f"07911 {100000 + i}"] for i in range(25_000)]
    (found,) = diagnoses.of_normalized(normalized(csv_bytes(HEADER, rows)))
    assert found.numbers == {
        "invalid_phones": 25_000,
        "valid_in_region": 25_000,
        "region": "GB",
        "default_region": "US",
        "estimated": 1,
    }
    assert found.message.startswith("about 25000 of 25000 invalid phones are valid GB numbers")


def test_a_few_foreign_numbers_are_not_a_region_problem() -> None:
    rows = [person(i) for i in range(100)] + [["A", "B", "", uk_mobile(i)] for i in range(10)]
    assert codes(normalized(csv_bytes(HEADER, rows))) == []


def test_a_country_column_keeps_its_rows_out_of_the_region_diagnosis() -> None:
    header = [*HEADER, "Country"]
    rows = [["A", "B", "", uk_mobile(i), "Germany"] for i in range(50)] + [[*person(i), ""] for i in range(5)]
    assert codes(normalized(csv_bytes(header, rows))) == []


def test_a_fax_column_taken_for_the_phone_names_the_mobile_column() -> None:
    header = ["Name", "Phone", "Cell Number Private", "Notes"]
    rows = [[f"P {i}", "", person(i)[3], "met at fair"] for i in range(40)]
    for i in range(4):
        rows[i][1] = person(100 + i)[3]  # a few rows have a phone in the column used
    item = normalized(csv_bytes(header, rows), column_mapping={"phone": "Phone"})
    (found,) = diagnoses.of_normalized(item)
    assert found.code == "phone_column"
    assert found.numbers == {
        "rows_checked": 40,
        "column": "Cell Number Private",
        "valid_phones": 40,
        "used_column": "Phone",
        "used_valid_phones": 4,
    }
    assert found.message == (
        "column 'Cell Number Private' has 40 valid phones in the first 40 rows, the phone column used ('Phone') 4: "
        'map it with column_mapping {"phone": "Cell Number Private"} (--map phone=\'Cell Number Private\')'
    )


def test_a_semicolon_file_read_as_one_column_is_named() -> None:
    lines = [f"P {i};{person(i)[3]};met at fair" for i in range(20)]
    found = diagnoses.delimiter(["Name;Phone;Note"], pd.DataFrame({"0": lines}, dtype="str"))
    assert found is not None and found.as_dict() == {
        "code": "delimiter",
        "message": "header 'Name;Phone;Note' holds the semicolon delimiter and 20 of its first 20 values hold it: "
        "the file looks semicolon-separated; save it with one delimiter throughout (quoting cells that contain it) "
        "and import it again",
        "numbers": {
            "column": "Name;Phone;Note",
            "delimiter": ";",
            "rows_checked": 20,
            "rows_with_delimiter": 20,
            "ragged_rows": 0,
        },
    }


def test_a_semicolon_file_the_reader_splits_at_commas_is_named() -> None:
    """Commas in the header and in every row make the reader take ','; the rows then have the wrong width."""
    text = "Name, Last;Phone, mobile\n" + "".join(f"Smith, John {i};+1 212 555 {1000 + i}\n" for i in range(20))
    item = normalized(text.encode())
    found = diagnoses.of_normalized(item)
    assert [(d.code, d.numbers["ragged_rows"]) for d in found] == [("delimiter", 20)]
    assert found[0].message.startswith(
        "header 'Last;Phone' holds the semicolon delimiter and 20 of 20 rows have the wrong number of fields"
    )


def test_tab_and_pipe_in_one_column_are_named_but_a_comma_in_a_header_is_not() -> None:
    tabbed = pd.DataFrame({"0": [f"P {i}\t{i}" for i in range(10)]}, dtype="str")
    found = diagnoses.delimiter(["Name\tPhone"], tabbed)
    assert found is not None and (found.code, found.numbers["delimiter"]) == ("delimiter", "\t")
    names = pd.DataFrame({"0": [f"Smith, John {i}" for i in range(10)]}, dtype="str")
    assert diagnoses.delimiter(["Name (Last, First)"], names) is None


def test_mojibake_cells_are_named_with_an_example() -> None:
    rows = [[f"JosÃ© {i}", "MÃ¼ller", "", person(i)[3]] for i in range(6)] + [person(i) for i in range(6, 40)]
    (found,) = diagnoses.of_normalized(normalized(csv_bytes(HEADER, rows)))
    assert found.as_dict() == {
        "code": "encoding",
        "message": "12 cells in the first 40 rows look like UTF-8 text that was saved as Windows-1252 "
        "(e.g. 'JosÃ© 0'): fix the export's encoding (save as UTF-8) and import it again",
        "numbers": {"rows_checked": 40, "cells": 12},
    }


def test_real_accents_and_portuguese_capitals_are_not_mojibake() -> None:
    rows = [["José", "Müller", "", person(0)[3]], ["SÃO", "JOÃO", "", person(1)[3]]] * 5
    assert codes(normalized(csv_bytes(HEADER, rows))) == []


def test_a_file_imported_twice_and_a_file_that_nearly_all_fails() -> None:
    (again,) = diagnoses.of_outcome(100, {"duplicate_existing": 95}, {"invalid_phone": 5}, "acme")
    assert again.as_dict() == {
        "code": "already_imported",
        "message": "95 of 100 rows are already contacts of workspace acme: was this file imported before? "
        "(contact-import imports --workspace lists earlier imports; --on-duplicate update fills their empty fields)",
        "numbers": {"rows": 100, "duplicate_existing": 95},
    }
    (failing,) = diagnoses.of_outcome(100, {}, {"invalid_phone": 80, "missing_phone": 12}, "acme")
    assert failing.as_dict() == {
        "code": "mostly_failed",
        "message": "92 of 100 rows failed, 80 as invalid_phone: check the phone column and the default region",
        "numbers": {"rows": 100, "failed": 92, "reason": "invalid_phone", "reason_rows": 80},
    }
    assert diagnoses.of_outcome(100, {"duplicate_existing": 89}, {"invalid_phone": 10}, "acme") == []
    assert diagnoses.of_outcome(4, {"duplicate_existing": 4}, {}, "acme") == []  # too few rows to tell


@pytest.mark.parametrize("export", sorted(p.name for p in EXPORTS.glob("*.csv")))
def test_silent_on_every_real_export(export: str) -> None:
    item = normalized((EXPORTS / export).read_bytes())
    assert codes(item) == []
    skipped, failed = item.rejects.counts(skipped=True), item.rejects.counts(skipped=False)
    assert diagnoses.of_outcome(item.total, skipped, failed, "ws1") == []


def test_silent_on_the_benchmark_file(tmp_path: Path) -> None:
    """The benchmark's generated export: national and international numbers, invalid ones, duplicates."""
    path = tmp_path / "bench.csv"
    generate(20_000, 7, path)
    item = normalized(path.read_bytes())
    assert codes(item) == []
    deduped = stages.dedupe([item], lambda workspace_id, phones: set())[0]
    skipped, failed = deduped.rejects.counts(skipped=True), deduped.rejects.counts(skipped=False)
    assert diagnoses.of_outcome(deduped.total, skipped, failed, "ws1") == []


def test_a_header_over_cells_listing_several_values_is_not_a_delimiter_problem() -> None:
    tags = pd.DataFrame({"0": [f"fair; vip; lead {i}" for i in range(20)]}, dtype="str")
    assert diagnoses.delimiter(["Tags; Groups"], tags) is None
    assert diagnoses.delimiter(["Segments (a|b)"], pd.DataFrame({"0": ["x|y|z"] * 20}, dtype="str")) is None
