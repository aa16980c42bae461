"""Arrow's multi-threaded CSV reader for files it provably reads exactly as the strict reader.

The strict reader (``csv_file``) parses with Python's csv module on one core: ~7 s for a million
rows. Arrow parses the same bytes on every core in well under a second, but it cannot number rows
by their line, reject a row with a reason, or recover from a runaway quote. So this path is taken
only when it gives the strict reader's result, and it says so by returning None otherwise:

* the bytes are UTF-8 (with or without BOM), hold no NUL and no lone CR, and the header is one
  line of at least two columns;
* Arrow finds no row with the wrong number of fields, and no field over the length cap;
* the lines add up: header + each row's own lines (1 + the newlines inside its quoted fields) is
  the file's line count, so there is no blank line and every row's line number is exact.

Every other file (a cp1252 export, a ragged row, a broken quote, a blank line...) goes through the
strict reader, which rejects rows with their reasons. contact_import_tests/reading/ compares both
paths on the hostile corpus, every export fixture and generated files.
"""

from __future__ import annotations

import codecs
import csv

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from contact_import_pipeline.settings import Limits


def read(data: bytes, delimiter: str, limits: Limits) -> tuple[list[str], pa.Table, np.ndarray, str] | None:
    """(header cells, text columns "0".."n-1", line number of each row, encoding), or None."""
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        data, encoding = data[len(codecs.BOM_UTF8) :], "utf-8-sig"
    if b"\x00" in data or data.count(b"\r") != data.count(b"\r\n"):
        return None
    end = data.find(b"\n")
    header_line = data[: end + 1 if end >= 0 else len(data)]
    try:
        header_text = header_line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        records = list(csv.reader([header_text], delimiter=delimiter, quotechar='"', doublequote=True, strict=True))
    except csv.Error:
        return None
    if len(records) != 1 or not (2 <= len(records[0]) <= limits.max_columns):
        return None
    if any(len(cell) > limits.max_field_chars for cell in records[0]):
        return None
    width = len(records[0])
    names = [str(index) for index in range(width)]
    invalid: list[int] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        invalid.append(row.number)
        return "skip"

    try:
        table = pa_csv.read_csv(
            pa.BufferReader(data[len(header_line) :]),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=True),
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.large_string()),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
    except pa.ArrowInvalid:  # invalid UTF-8 among others: the strict reader says where
        return None
    if invalid or table.num_rows == 0:
        return None
    if any((pc.max(pc.utf8_length(column)).as_py() or 0) > limits.max_field_chars for column in table.columns):
        return None
    extra = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        extra += pc.count_substring(column, "\n").to_numpy(zero_copy_only=False)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    row_lines = 1 + extra
    if 1 + int(row_lines.sum()) != lines:  # a blank line, or a row Arrow read differently
        return None
    starts = np.empty(table.num_rows, dtype=np.int64)
    starts[0] = 2
    np.cumsum(row_lines[:-1], out=starts[1:])
    starts[1:] += 2
    if extra.any() and not _multi_line_rows_well_quoted(data, starts[extra > 0], row_lines[extra > 0], delimiter):
        return None
    return [cell.strip() for cell in records[0]], table, starts, encoding


def _multi_line_rows_well_quoted(data: bytes, starts: np.ndarray, counts: np.ndarray, delimiter: str) -> bool:
    """Whether each row spanning lines parses under strict quoting, as the strict reader demands
    of such a row (otherwise it is a quote left open, which that reader undoes line by line)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))  # line n ends at ends[n - 1]
    for start, count in zip(starts.tolist(), counts.tolist(), strict=True):
        first = 0 if start == 1 else int(ends[start - 2]) + 1
        last = int(ends[start + count - 2]) + 1 if start + count - 2 < len(ends) else len(data)
        text = data[first:last].decode("utf-8")
        try:
            records = list(csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=True))
        except csv.Error:
            return False
        if len(records) != 1:
            return False
    return True
