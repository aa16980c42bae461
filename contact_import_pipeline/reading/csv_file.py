"""Uploaded bytes → decoded text → CSV rows, every value kept as text.

Why this module exists: user CSVs come from Excel, Google Sheets, Outlook and old CRMs, so the
reader must guess the encoding and delimiter, survive broken rows, and never lose or invent data.

Policy, in the order it is applied:

* **Caps and file type.** The byte cap is checked before anything else. gzip / zip (xlsx too) /
  bzip2 / xz / 7z / zstd magic, legacy .xls, and text that is mostly control bytes are refused
  as files, with a message saying what to do.
* **Encoding.** A BOM decides (UTF-8, UTF-16 LE/BE, UTF-32). Without one, strict UTF-8 is tried
  first. If it fails, the file is either UTF-8 with a few broken bytes (valid multibyte UTF-8
  sequences outnumber the bytes that fit no sequence) → file error naming the byte offset and
  line, or a single-byte file → Windows-1252, where the five bytes cp1252 leaves undefined
  (0x81 0x8D 0x8F 0x90 0x9D) are read as Latin-1. Nothing is ever replaced silently.
  UTF-16 *without* a BOM (NUL in every other byte) is refused, not guessed: the user is told to
  re-save as UTF-8, because a wrong guess would import garbage names.
* **Delimiter.** `,` `;` TAB `|` counted outside quotes on the header line; most wins, ties go
  in that order, none → `,` (single-column file).
* **Rows.** Parsed by the stdlib `csv` module (non-strict). Blank lines are skipped but still
  count for line numbers. A row is rejected (`Reject`), never fixed, when it has a NUL
  (`nul_character`), a field over `max_field_chars` (`field_too_long`) or a field count other
  than the header's (`wrong_field_count`). Exception: extra fields that are all exactly empty
  are dropped and the row kept, because Excel pads rows that way.
* **Broken quotes.** A quote that is opened and not closed makes the csv module swallow the
  following lines into one field. When such a multi-line record is rejected, only its first
  line is reported (reason from the whole record, detail naming the lines) and the following
  lines are parsed again as rows of their own, so every line is counted exactly once.
"""

from __future__ import annotations

import codecs
import csv
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from contact_import_pipeline.errors import CsvFileError
from contact_import_pipeline.model import Reject
from contact_import_pipeline.reading import arrow_path
from contact_import_pipeline.settings import Limits
from contact_import_pipeline.vocabulary import Reason

# Candidate delimiters, in tie-break order (comma is the CSV default and the single-column answer).
DELIMITERS = (",", ";", "\t", "|")

# Good rows are turned into Arrow columns in chunks of this many rows, so Python str objects for
# at most one chunk exist at a time (10M small str objects would cost ~5× the file size).
FRAME_CHUNK_ROWS = 50_000

# Bytes looked at to recognise UTF-16 without a BOM or binary content: enough for dozens of rows.
_SNIFF_BYTES = 64 * 1024

# csv's own cap is raised far above any max_field_chars so long fields reach our check instead
# of raising csv.Error (2**31 - 1 fits a C long on every platform).
_CSV_FIELD_SIZE_LIMIT = 2**31 - 1

_COMPRESSED_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"PK\x07\x08", "zip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls / .doc

# BOMs, longest first (the UTF-32 LE BOM starts with the UTF-16 LE one): BOM, reported name, codec.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32", "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32", "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16", "utf-16-be"),
)

# A well-formed UTF-8 multibyte sequence (no overlongs, no surrogates).
_UTF8_MULTIBYTE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2}"
)
_HIGH_BYTES = bytes(range(128, 256))

# C0 control bytes that never appear in text files (TAB, LF, FF, CR, SUB and ESC are allowed).
_BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 26, 27))

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")


def _latin1_fallback(error: UnicodeError) -> tuple[str, int]:
    """Read the bytes cp1252 leaves undefined as their Latin-1 characters (U+0081 etc.)."""
    assert isinstance(error, UnicodeDecodeError)  # registered for decoding only
    bad = error.object[error.start : error.end]
    return bad.decode("latin-1"), error.end


_CP1252_ERRORS = "contact_import_cp1252_latin1"
codecs.register_error(_CP1252_ERRORS, _latin1_fallback)


@dataclass
class CsvTable:
    """A decoded file: header, good rows as text columns, and the rows that were rejected."""

    source: str
    header: list[str]
    frame: pd.DataFrame
    rows: np.ndarray
    rejects: list[Reject]
    encoding: str
    delimiter: str
    parser: str = "python"  # which reader produced it: "python" (this module) or "arrow" (arrow_path)


def read_csv_bytes(data: bytes, source: str, limits: Limits | None = None, use_arrow: bool = True) -> CsvTable:
    """Decode and parse one uploaded file; raise CsvFileError if the file as a whole is unusable."""
    return read_csv_loaded(lambda: data, source, limits, use_arrow)


def read_csv_loaded(
    load: Callable[[], bytes], source: str, limits: Limits | None = None, use_arrow: bool = True
) -> CsvTable:
    """``read_csv_bytes`` for bytes that ``load`` returns, dropped as soon as they are decoded.

    The caller keeps no reference, so a file is never held both undecoded and decoded while it
    is parsed (~100 MB less at a million rows). A file Arrow reads exactly as this module would
    takes Arrow's multi-threaded reader (``arrow_path``); ``use_arrow=False`` forces this module's.
    """
    limits = limits or Limits()
    data = load()
    if len(data) > limits.max_file_bytes:
        raise CsvFileError(
            f"{source}: file is {len(data):,} bytes, over the {limits.max_file_bytes:,}-byte limit; "
            "split it into smaller files and upload them separately"
        )
    _refuse_non_text(data, source)
    if use_arrow:
        fast = _read_with_arrow(data, source, limits)
        if fast is not None:
            return fast
    text, encoding = _decode(data, source)
    del data
    if not text or text.isspace():  # no stripped copy of the whole text
        raise _empty(source)
    delimiter = _sniff_delimiter(text)
    records = _Records(text, delimiter, limits.max_field_chars)
    del text  # the records' lines hold it now; never both at once
    return _parse(records, source, encoding, delimiter, limits)


def _read_with_arrow(data: bytes, source: str, limits: Limits) -> CsvTable | None:
    """The file through Arrow's reader, or None when that would not be exactly this module's result."""
    prefix = data[: 4 * _SNIFF_BYTES].removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="ignore")
    if not prefix or prefix.isspace():
        return None
    delimiter = _sniff_delimiter(prefix)
    found = arrow_path.read(data, delimiter, limits)
    if found is None:
        return None
    header, table, rows, encoding = found
    frame = pd.DataFrame({name: table.column(name).to_pandas(types_mapper=_str_dtype) for name in table.column_names})
    return CsvTable(
        source=source,
        header=header,
        frame=frame,
        rows=rows,
        rejects=[],
        encoding=encoding,
        delimiter=delimiter,
        parser="arrow",
    )


def _empty(source: str) -> CsvFileError:
    """The error for a file with no header row."""
    return CsvFileError(f"{source}: file is empty; export the contacts again with a header row")


def _refuse_non_text(data: bytes, source: str) -> None:
    """Refuse archives, spreadsheets and other binary content renamed to .csv."""
    for magic, kind in _COMPRESSED_MAGIC:
        if data.startswith(magic):
            hint = " (an Excel .xlsx workbook: save it as CSV instead)" if b"xl/" in data[:4096] else ""
            raise CsvFileError(
                f"{source}: is a compressed ({kind}) file, not CSV{hint}; unpack it and upload the .csv inside"
            )
    if _BZIP2.match(data):
        raise CsvFileError(f"{source}: is a compressed (bzip2) file, not CSV; unpack it and upload the .csv inside")
    if data.startswith(_OLE2_MAGIC):
        raise CsvFileError(f"{source}: is an Excel 97-2003 workbook (.xls), not CSV; open it and save as CSV UTF-8")
    if any(data.startswith(bom) for bom, _, _ in _BOMS):
        return
    sample = data[:_SNIFF_BYTES]
    if not sample:
        return
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) / 2
    if max(even_nuls, odd_nuls) > 0.3 * half and min(even_nuls, odd_nuls) < 0.05 * half:
        raise CsvFileError(
            f"{source}: looks like UTF-16 text without a byte-order mark; re-save it as CSV UTF-8 and upload it again"
        )
    if len(sample) - len(sample.translate(None, _BINARY_BYTES)) > 0.1 * len(sample):
        raise CsvFileError(f"{source}: is a binary file, not CSV text; export the contacts as CSV and upload that")


def _decode(data: bytes, source: str) -> tuple[str, str]:
    """Bytes → text and the encoding used; never replaces a character."""
    for bom, name, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(codec), name
            except UnicodeDecodeError as error:
                prefix = data[len(bom) : len(bom) + error.start].decode(codec, errors="replace")
                raise _decode_error(source, name, error.start + len(bom), prefix) from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as error:
        first_bad = error.start
    sequences = covered = 0
    for match in _UTF8_MULTIBYTE.finditer(data):
        sequences += 1
        covered += match.end() - match.start()
    stray = len(data) - len(data.translate(None, _HIGH_BYTES)) - covered
    if sequences >= stray:
        raise _decode_error(source, "utf-8", first_bad, data[:first_bad].decode("utf-8"))
    return data.decode("cp1252", errors=_CP1252_ERRORS), "cp1252"


def _decode_error(source: str, encoding: str, offset: int, before: str) -> CsvFileError:
    """The error for bytes that do not fit the file's (clear) encoding; `before` is the text up to them."""
    line = before.count("\n") + before.count("\r") - before.count("\r\n") + 1
    return CsvFileError(
        f"{source}: invalid {encoding} bytes at byte offset {offset:,} (line {line:,}); "
        "the file mixes encodings or is damaged: re-save it as CSV UTF-8 and upload it again"
    )


_QUOTED_OR_PLAIN = re.compile(r'(?:"[^"]*"|[^"\r\n])*')
_QUOTED = re.compile(r'"[^"]*"')


def _sniff_delimiter(text: str) -> str:
    """The candidate delimiter seen most often outside quotes on the header line."""
    first = re.search(r"\S", text)
    assert first is not None  # the caller has checked that text is not blank
    start = max(text.rfind("\n", 0, first.start()), text.rfind("\r", 0, first.start())) + 1
    match = _QUOTED_OR_PLAIN.match(text, start, start + _SNIFF_BYTES)
    header = match.group() if match else ""
    unquoted = _QUOTED.sub("", header)
    counts = [unquoted.count(candidate) for candidate in DELIMITERS]
    best = max(counts)
    return DELIMITERS[counts.index(best)] if best else ","


class _Records:
    """csv.reader over the lines of `text` that knows each record's first and last line.

    The reader runs over a list of lines in C; Python code runs once per record, not per line.
    It can restart just after the first line of a record, which is how a runaway quote is
    undone: the swallowed lines are parsed again as rows of their own.
    """

    def __init__(self, text: str, delimiter: str, max_field_chars: int) -> None:
        self.lines = _split_lines(text)
        self._dialect: dict[str, Any] = {
            "delimiter": delimiter,
            "quotechar": '"',
            "doublequote": True,
            "skipinitialspace": False,
            "strict": False,
        }
        self.first = self.line = 0  # first and last line of the current record (1-based)
        # Lines that could hold a NUL or an over-long field; a record on any other line needs no
        # such check. Usually none, found with two scans in C.
        self.suspicious: set[int] = set()
        if "\x00" in text or max(map(len, self.lines), default=0) > max_field_chars:
            self.suspicious = {
                number for number, line in enumerate(self.lines, 1) if len(line) > max_field_chars or "\x00" in line
            }
        self._restart(0)

    def _restart(self, lines_before: int) -> None:
        self.line = self._lines_before = lines_before
        lines: Any = iter(self.lines)
        lines.__setstate__(lines_before)  # a list iterator can start anywhere without copying
        self._reader = csv.reader(lines, **self._dialect)

    def __iter__(self) -> _Records:
        return self

    def __next__(self) -> list[str]:
        self.first = self.line + 1
        record = next(self._reader)
        self.line = self._lines_before + self._reader.line_num
        return record

    def well_quoted(self) -> bool:
        """Whether the current record parses under strict quoting (a runaway quote does not)."""
        try:
            for _ in csv.reader(self.lines[self.first - 1 : self.line], **{**self._dialect, "strict": True}):
                pass
        except csv.Error:
            return False
        return True

    def first_line_only(self) -> list[str]:
        """Re-read the current record as its first line alone and restart after that line."""
        line = self.lines[self.first - 1]
        self._restart(self.first)
        return next(csv.reader([line.rstrip("\r\n")], **self._dialect), [])


def _split_lines(text: str) -> list[str]:
    """The lines of `text` with their endings (CRLF, LF or a lone CR), as csv.reader reads them."""
    if text.count("\r") != text.count("\r\n"):
        return _LINE.findall(text)
    # No lone CR: splitting on LF gives the same lines; str.split is ~3x faster than the regex.
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _problem(record: list[str], width: int, limits: Limits) -> tuple[list[str], str, str]:
    """(record, reason, detail) for a suspicious record; reason '' means the row is fine.

    Extra fields that are all exactly empty are dropped (Excel pads rows like that).
    """
    for index, value in enumerate(record):
        if "\x00" in value:
            return record, Reason.NUL_CHARACTER.value, f"field {index + 1} contains a NUL character (byte 0)"
    for index, value in enumerate(record):
        if len(value) > limits.max_field_chars:
            return (
                record,
                Reason.FIELD_TOO_LONG.value,
                f"field {index + 1} has {len(value):,} characters, over the {limits.max_field_chars:,} limit",
            )
    if len(record) > width and not any(record[width:]):
        record = record[:width]
    if len(record) != width:
        return record, Reason.WRONG_FIELD_COUNT.value, f"expected {width} fields, found {len(record)}"
    return record, "", ""


def _is_blank(record: list[str]) -> bool:
    """An empty or whitespace-only line: not a row."""
    return len(record) < 2 and not (record and record[0].strip())


def _parse(records: _Records, source: str, encoding: str, delimiter: str, limits: Limits) -> CsvTable:
    """Header plus good rows as Arrow-backed text columns, and rejects with their line numbers."""
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_SIZE_LIMIT))
    header_record = next((record for record in records if not _is_blank(record)), None)
    if header_record is None:
        raise _empty(source)
    header = _checked_header(header_record, records, source, limits)
    width = len(header)
    suspicious = records.suspicious
    chunk: list[list[str]] = []
    columns: list[list[pa.Array]] = [[] for _ in range(width)]
    row_numbers = array("q")
    rejects: list[Reject] = []
    for record in records:
        multi_line = records.line != records.first
        if len(record) != width or multi_line or (suspicious and records.first in suspicious):
            if _is_blank(record):
                continue
            record, reason, detail = _problem(record, width, limits)
            if multi_line and reason != Reason.NUL_CHARACTER.value and _runaway(reason, records):
                rejects.append(_runaway_reject(reason, detail, records, limits))
                continue
            if reason:
                rejects.append(Reject(records.first, reason, detail, record[: limits.max_columns + 1]))
                continue
        chunk.append(record)
        row_numbers.append(records.first)
        if len(chunk) == FRAME_CHUNK_ROWS:
            _flush(chunk, columns)
    _flush(chunk, columns)
    frame = pd.DataFrame({str(index): text_column(chunks) for index, chunks in enumerate(columns)})
    return CsvTable(
        source=source,
        header=header,
        frame=frame,
        rows=np.frombuffer(row_numbers, dtype=np.int64).copy() if row_numbers else np.zeros(0, np.int64),
        rejects=rejects,
        encoding=encoding,
        delimiter=delimiter,
    )


def _checked_header(record: list[str], records: _Records, source: str, limits: Limits) -> list[str]:
    """The header cells, stripped; a header that cannot be trusted fails the whole file."""
    where = f"{source}: the header row (line {records.first})"
    if records.line > records.first:
        raise CsvFileError(
            f"{where} runs over lines {records.first}–{records.line}, so a quote in it is probably "
            "not closed; fix the header so it fits on one line"
        )
    if len(record) > limits.max_columns:
        raise CsvFileError(
            f"{where} has {len(record):,} columns, over the {limits.max_columns:,} limit; "
            "remove unused columns and upload again"
        )
    if any("\x00" in cell or len(cell) > limits.max_field_chars for cell in record):
        raise CsvFileError(f"{where} contains a NUL byte or an over-long cell; fix the header row")
    return [cell.strip() for cell in record]


def _runaway(reason: str, records: _Records) -> bool:
    """Whether a multi-line record is a quote left open rather than a real multi-line field."""
    return reason == Reason.FIELD_TOO_LONG.value or not records.well_quoted()


def _runaway_reject(reason: str, detail: str, records: _Records, limits: Limits) -> Reject:
    """Reject only the first line of a runaway-quote record; the lines it swallowed are read again."""
    first, last = records.first, records.line
    record = records.first_line_only()
    detail = "; ".join(
        part
        for part in (
            detail,
            f"a quoted field opened on line {first} is not closed properly (it runs to line {last}), "
            f"so lines {first + 1}–{last} are read again as rows of their own",
        )
        if part
    )
    return Reject(first, reason or Reason.WRONG_FIELD_COUNT.value, detail, record[: limits.max_columns + 1])


def _flush(chunk: list[list[str]], columns: list[list[pa.Array]]) -> None:
    """Move buffered rows into Arrow column chunks and empty the buffer.

    Converting the rows as one list<string> array and slicing out every column with `take`
    keeps the per-value work in C (3× faster than transposing in Python).
    """
    if chunk:
        width, count = len(columns), len(chunk)
        flat = pa.array(chunk, type=pa.list_(pa.large_string())).flatten()
        for index, column in enumerate(columns):
            column.append(flat.take(np.arange(index, count * width, width)))
        chunk.clear()


def text_column(chunks: list[pa.Array]) -> pd.Series:
    """One frame column: pandas' Arrow-backed `str` dtype, values read back as plain str."""
    joined = pa.chunked_array(chunks, type=pa.large_string())
    return joined.to_pandas(types_mapper=_str_dtype)


def _str_dtype(arrow_type: pa.DataType) -> pd.StringDtype | None:
    """Map Arrow strings to pandas `str` (never NaN here: every cell has a value)."""
    return pd.StringDtype("pyarrow", na_value=np.nan) if pa.types.is_large_string(arrow_type) else None
