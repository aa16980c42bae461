"""importing.rejects: the rejects file a user opens in a spreadsheet."""

from __future__ import annotations

import csv
import io

from contact_import_pipeline.importing.rejects import escape_cell, rejects_csv
from contact_import_pipeline.model import Reject


def test_rejects_file_escapes_formulas_and_keeps_extra_fields() -> None:
    assert [escape_cell(v) for v in ("=1+1", "+1 202", "-3", "@SUM", "\tx", "\rx", "plain", "")] == [
        "'=1+1",
        "'+1 202",
        "'-3",
        "'@SUM",
        "'\tx",
        "'\rx",
        "plain",
        "",
    ]
    rejects = [
        Reject(row=3, reason="invalid_phone", detail="not a valid phone number: '=2+5'", values=["=cmd", "=2+5"]),
        Reject(row=4, reason="wrong_field_count", detail="expected 2 fields, found 3", values=["a", "b", "c"]),
    ]
    text = rejects_csv(["Name", "Phone"], rejects).decode("utf-8")
    assert text.startswith("\ufeff")
    parsed = list(csv.reader(io.StringIO(text[1:])))
    assert parsed == [
        ["Name", "Phone", "extra_3", "row", "reason", "detail"],
        ["'=cmd", "'=2+5", "", "3", "invalid_phone", "not a valid phone number: '=2+5'"],
        ["a", "b", "c", "4", "wrong_field_count", "expected 2 fields, found 3"],
    ]
