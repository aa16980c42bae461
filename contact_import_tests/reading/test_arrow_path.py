"""Arrow's reader is used only where it gives exactly the strict reader's rows, row numbers and
rejects: checked on the hostile corpus, every export fixture, a generated export and random files."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.generate import generate
from contact_import_pipeline.errors import CsvFileError
from contact_import_pipeline.reading.csv_file import CsvTable, read_csv_bytes

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = sorted((TESTS / "corpus").glob("*.csv")) + sorted((TESTS / "data" / "exports").glob("*.csv"))
# Files the strict reader must read: not UTF-8, a NUL, a lone CR, a blank line, a ragged row, an
# over-long field, a broken quote, or no data row. A change in this list is a change of behaviour.
STRICT_ONLY = {
    "blank_lines.csv",
    "cp1252_smart_quotes.csv",
    "cr_only.csv",
    "german_outlook.csv",
    "header_only.csv",
    "huge_field.csv",
    "huge_row_width.csv",
    "mixed_newlines.csv",
    "nul_in_field.csv",
    "ragged_rows.csv",
    "unterminated_quote.csv",
    "unterminated_quote_closed_later.csv",
    "utf16be_bom.csv",
    "utf16le_bom.csv",
}


def both(data: bytes, name: str = "f.csv") -> tuple[CsvTable | str, CsvTable | str]:
    """The file read as usual and by the strict reader alone (an error's message in place of a table)."""
    out: list[CsvTable | str] = []
    for use_arrow in (True, False):
        try:
            out.append(read_csv_bytes(data, name, use_arrow=use_arrow))
        except CsvFileError as exc:
            out.append(str(exc))
    return out[0], out[1]


def assert_same(usual: CsvTable | str, strict: CsvTable | str) -> None:
    if isinstance(usual, str) or isinstance(strict, str):
        assert usual == strict
        return
    assert (usual.header, usual.encoding, usual.delimiter, usual.rejects) == (
        strict.header,
        strict.encoding,
        strict.delimiter,
        strict.rejects,
    )
    assert usual.rows.tolist() == strict.rows.tolist()
    assert usual.frame.equals(strict.frame)
    assert strict.parser == "python"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_fixture_reads_the_same_and_takes_the_expected_reader(path: Path) -> None:
    usual, strict = both(path.read_bytes(), path.name)
    assert_same(usual, strict)
    if not isinstance(usual, str):
        assert usual.parser == ("python" if path.name in STRICT_ONLY else "arrow")


def test_a_generated_export_with_quoted_newlines_takes_arrow_with_exact_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    generate(3000, 7, path)  # names, quoted addresses with commas and embedded newlines (1%)
    data = path.read_bytes()
    usual, strict = both(data)
    assert isinstance(usual, CsvTable) and usual.parser == "arrow"
    assert_same(usual, strict)
    assert len(usual.frame) == 3000 and usual.rows[-1] > 3001  # some rows span lines


_CELL = st.text(alphabet=st.sampled_from(list('ab ,;"\n\r\t1é')), max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(_CELL, min_size=3, max_size=3), min_size=1, max_size=8),
    newline=st.sampled_from(["\n", "\r\n"]),
    raw=st.booleans(),
)
def test_random_files_read_the_same_whichever_reader(rows: list[list[str]], newline: str, raw: bool) -> None:
    """Well-formed files (written by csv) and raw ones (cells joined by hand, quotes unbalanced)."""
    if raw:
        text = newline.join(",".join(row) for row in [["a", "b", "c"], *rows]) + newline
    else:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=newline).writerows([["a", "b", "c"], *rows])
        text = buffer.getvalue()
    assert_same(*both(text.encode("utf-8")))
