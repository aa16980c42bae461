"""reading.csv_file: bytes → CsvTable, with exact rows, row numbers and rejects for every awkward file."""

from __future__ import annotations

import gzip
import io
import zipfile

import numpy as np
import pytest

from contact_import_pipeline.errors import CsvFileError
from contact_import_pipeline.model import Reject
from contact_import_pipeline.reading.csv_file import CsvTable, read_csv_bytes
from contact_import_pipeline.settings import Limits


def read(data: bytes, limits: Limits | None = None) -> CsvTable:
    return read_csv_bytes(data, "contacts.csv", limits)


def values(table: CsvTable) -> list[list[str]]:
    """The frame as plain rows, asserting every cell is a str."""
    rows = table.frame.astype(object).values.tolist()
    assert all(type(cell) is str for row in rows for cell in row)
    return rows


def refused(data: bytes, limits: Limits | None = None) -> str:
    with pytest.raises(CsvFileError) as caught:
        read(data, limits)
    message = str(caught.value)
    assert message.startswith("contacts.csv: ")
    return message


# --- encodings ---------------------------------------------------------------------------------

TEXT = "name,phone\nJosé Müller,+15551234567\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (TEXT.encode("utf-8-sig"), "utf-8-sig"),
        (TEXT.encode("utf-16"), "utf-16"),  # native order with BOM
        (b"\xff\xfe" + TEXT.encode("utf-16-le"), "utf-16"),
        (b"\xfe\xff" + TEXT.encode("utf-16-be"), "utf-16"),
    ],
)
def test_unicode_encodings(data: bytes, encoding: str) -> None:
    table = read(data)
    assert table.encoding == encoding
    assert table.header == ["name", "phone"]
    assert values(table) == [["José Müller", "+15551234567"]]
    assert table.rows.tolist() == [2]


def test_cp1252_accents_euro_and_smart_quotes() -> None:
    data = "name,note\nRené,“5 €” deal\n".encode("cp1252")
    table = read(data)
    assert table.encoding == "cp1252"
    assert values(table) == [["René", "“5 €” deal"]]


def test_cp1252_undefined_bytes_read_as_latin1() -> None:
    table = read(b"name,note\nA\xe9,\x81\x8d\x8f\x90\x9d\n")
    assert table.encoding == "cp1252"
    assert values(table) == [["Aé", "\x81\x8d\x8f\x90\x9d"]]


def test_invalid_bytes_in_utf8_file_name_offset_and_line() -> None:
    data = "name,city\nZoë,Köln\nChloé,Zürich\n".encode() + b"Bad\xe9,Paris\n" + "René,Nîmes\n".encode()
    message = refused(data)
    offset = data.index(b"\xe9,Paris")
    assert f"byte offset {offset}" in message
    assert "(line 4)" in message
    assert "UTF-8" in message


def test_utf16_without_bom_is_refused() -> None:
    message = refused(TEXT.encode("utf-16-le"))
    assert "UTF-16" in message and "byte-order mark" in message and "UTF-8" in message


# --- not CSV at all ----------------------------------------------------------------------------


def test_gzip_is_refused() -> None:
    message = refused(gzip.compress(TEXT.encode()))
    assert "is a compressed (gzip) file, not CSV" in message
    assert "unpack it and upload the .csv inside" in message


def test_zip_and_xlsx_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("contacts.csv", TEXT)
    assert "is a compressed (zip) file, not CSV" in refused(buffer.getvalue())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    message = refused(buffer.getvalue())
    assert "is a compressed (zip) file, not CSV" in message and "Excel" in message


def test_binary_content_is_refused() -> None:
    assert "binary file" in refused(bytes(range(256)) * 40)


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\xff\xfe", b"  \r\n\t\n \n"])
def test_empty_files_are_refused(data: bytes) -> None:
    assert "is empty" in refused(data)


def test_file_over_byte_cap_is_refused_before_reading() -> None:
    data = b"phone\n" + b"5551234567\n" * 10
    message = refused(data, Limits(max_file_bytes=len(data) - 1))
    assert f"{len(data)} bytes" in message and "limit" in message
    assert len(read(data, Limits(max_file_bytes=len(data))).frame) == 10


# --- shape -------------------------------------------------------------------------------------


def test_header_only_gives_zero_rows() -> None:
    table = read(b"First Name , Phone\r\n")
    assert table.header == ["First Name", "Phone"]
    assert table.frame.shape == (0, 2)
    assert list(table.frame.columns) == ["0", "1"]
    assert table.rows.dtype == np.int64 and table.rows.tolist() == []
    assert table.rejects == []


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_each_delimiter(delimiter: str) -> None:
    others = "".join(d for d in ",;|" if d != delimiter)  # other candidates inside quotes/values
    data = f'name{delimiter}phone{delimiter}note\n"A{delimiter}B"{delimiter}0044 20{delimiter}x{others}\n'
    table = read(data.encode())
    assert table.delimiter == delimiter
    assert values(table) == [[f"A{delimiter}B", "0044 20", f"x{others}"]]


def test_delimiter_inside_quoted_header_is_not_counted() -> None:
    table = read(b'"a;b;c;d",phone\n1,2\n')
    assert table.delimiter == ","
    assert table.header == ["a;b;c;d", "phone"]


def test_single_column_defaults_to_comma() -> None:
    table = read(b"phone\n+1 555 123 4567\n")
    assert table.delimiter == ","
    assert values(table) == [["+1 555 123 4567"]]


def test_quoted_comma_and_newline_keep_row_numbers() -> None:
    data = b'name,note,phone\n"Smith, J","line one\nline two\nline three",1\nB,plain,2\n"C","x",3\n'
    table = read(data)
    assert values(table) == [
        ["Smith, J", "line one\nline two\nline three", "1"],
        ["B", "plain", "2"],
        ["C", "x", "3"],
    ]
    assert table.rows.tolist() == [2, 5, 6]


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_line_endings(newline: str) -> None:
    data = newline.join(["name,phone", "A,1", "", "B,2", '"C\nD",3', ""]).encode()
    table = read(data)
    assert values(table) == [["A", "1"], ["B", "2"], ["C\nD", "3"]]
    assert table.rows.tolist() == [2, 4, 5]


def test_blank_lines_are_skipped_but_counted() -> None:
    table = read(b"\nname,phone\n\nA,1\n   \n\n\nB,2\n\n")
    assert table.header == ["name", "phone"]
    assert values(table) == [["A", "1"], ["B", "2"]]
    assert table.rows.tolist() == [4, 8]
    assert table.rejects == []


def test_ragged_rows_are_rejected_and_the_rest_imported() -> None:
    table = read(b"a,b,c\n1,2,3\n1,2\n1,2,3,4\n4,5,6\n")
    assert values(table) == [["1", "2", "3"], ["4", "5", "6"]]
    assert table.rows.tolist() == [2, 5]
    assert table.rejects == [
        Reject(3, "wrong_field_count", "expected 3 fields, found 2", ["1", "2"]),
        Reject(4, "wrong_field_count", "expected 3 fields, found 4", ["1", "2", "3", "4"]),
    ]


def test_trailing_empty_fields_are_dropped() -> None:
    table = read(b"a,b\n1,2,,,\n3,4,, \n")
    assert values(table) == [["1", "2"]]
    assert table.rejects == [Reject(3, "wrong_field_count", "expected 2 fields, found 4", ["3", "4", "", " "])]


def test_values_stay_text_as_written() -> None:
    table = read(b"zip,phone,name,empty\n00123,+15551234567, Ann ,\n007,0044,NA,NULL\n")
    assert values(table) == [["00123", "+15551234567", " Ann ", ""], ["007", "0044", "NA", "NULL"]]
    assert table.frame.isna().sum().sum() == 0


def test_duplicate_header_names_are_kept_by_position() -> None:
    table = read(b"phone,Phone ,phone\n1,2,3\n")
    assert table.header == ["phone", "Phone", "phone"]
    assert list(table.frame.columns) == ["0", "1", "2"]
    assert values(table) == [["1", "2", "3"]]


# --- broken records ----------------------------------------------------------------------------


def test_unterminated_quote_rejects_only_its_line() -> None:
    data = b'name,phone\nA,1\nB,"2\nC,3\nD,4\n'
    table = read(data)
    assert values(table) == [["A", "1"], ["C", "3"], ["D", "4"]]
    assert table.rows.tolist() == [2, 4, 5]
    [reject] = table.rejects
    assert (reject.row, reject.reason, reject.values) == (3, "wrong_field_count", ["B", "2"])
    assert "line 3" in reject.detail and "quote" in reject.detail


def test_quote_closed_by_a_later_stray_quote_keeps_every_line() -> None:
    data = b'name,phone\nA,"1\nB,2\nC,3"x\nD,4\n'
    table = read(data)
    assert values(table) == [["B", "2"], ["C", '3"x'], ["D", "4"]]
    assert table.rows.tolist() == [3, 4, 5]
    assert [(r.row, r.reason, r.values) for r in table.rejects] == [(2, "wrong_field_count", ["A", "1"])]


def test_runaway_quote_over_field_limit_is_field_too_long() -> None:
    lines = [b"name,phone", b'A,"1'] + [b"N%d,%d" % (i, i) for i in range(50)]
    table = read(b"\n".join(lines) + b"\n", Limits(max_field_chars=100))
    assert table.rejects[0].row == 2 and table.rejects[0].reason == "field_too_long"
    assert len(table.rejects) == 1
    assert len(table.frame) == 50 and table.rows.tolist() == list(range(3, 53))


def test_field_too_long() -> None:
    table = read(b"name,phone\n" + b"x" * 11 + b",1\nshort,2\n", Limits(max_field_chars=10))
    assert values(table) == [["short", "2"]]
    assert table.rejects == [
        Reject(2, "field_too_long", "field 1 has 11 characters, over the 10 limit", ["x" * 11, "1"])
    ]


def test_long_field_within_limit_is_kept() -> None:
    long_value = "y" * 200_000  # over csv's own default limit of 131,072
    table = read(f"name,note\nA,{long_value}\n".encode(), Limits(max_field_chars=200_000))
    assert values(table) == [["A", long_value]]


def test_header_with_too_many_columns_is_refused() -> None:
    message = refused(b"a,b,c,d\n1,2,3,4\n", Limits(max_columns=3))
    assert "4 columns" in message and "limit" in message and "line 1" in message


def test_data_row_with_too_many_fields_is_truncated_in_reject() -> None:
    table = read(b"a,b\n" + b",".join(b"v%d" % i for i in range(10)) + b"\n", Limits(max_columns=3))
    assert table.rejects == [Reject(2, "wrong_field_count", "expected 2 fields, found 10", ["v0", "v1", "v2", "v3"])]


def test_nul_in_field_rejects_that_row() -> None:
    table = read(b"name,phone\nA\x00B,1\nC,2\n")
    assert values(table) == [["C", "2"]]
    assert table.rows.tolist() == [3]
    assert table.rejects == [Reject(2, "nul_character", "field 1 contains a NUL character (byte 0)", ["A\x00B", "1"])]


def test_many_rows_cross_chunk_boundaries() -> None:
    rows = [f"n{i},{i:07d}" for i in range(120_003)]
    table = read(("name,phone\n" + "\n".join(rows) + "\n").encode())
    assert len(table.frame) == 120_003
    assert table.frame["1"].iloc[-1] == "0120002" and table.frame["0"].iloc[50_000] == "n50000"
    assert table.rows[0] == 2 and table.rows[-1] == 120_004


def test_well_quoted_multi_line_row_with_wrong_count_is_one_reject() -> None:
    table = read(b'name,phone\n"two\nlines",1,extra\nB,2\n')
    assert values(table) == [["B", "2"]]
    assert table.rows.tolist() == [4]
    assert table.rejects == [Reject(2, "wrong_field_count", "expected 2 fields, found 3", ["two\nlines", "1", "extra"])]
