"""The rejects file: every failed or skipped row with its original values, its row and its reason.

Cells are escaped against formula injection (OWASP "CSV injection"): a cell starting with
``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'`` so spreadsheets show it as text.
Phones starting with ``+`` are escaped too; the quote is visible but the value is intact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
EXTRA_COLUMNS = ("row", "reason", "detail")


def escape_cell(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def rejects_csv(header: Sequence[str], rejects: Iterable[object]) -> bytes:
    """UTF-8 (with BOM, so Excel picks the encoding) CSV of rejected rows.

    ``rejects`` are items with ``row``, ``reason``, ``detail`` and ``values`` attributes.
    Rows with more fields than the header keep their extra fields under ``extra_<n>`` columns.
    """
    items = list(rejects)
    width = max([len(header)] + [len(r.values) for r in items])
    columns = list(header) + [f"extra_{i}" for i in range(len(header) + 1, width + 1)] + list(EXTRA_COLUMNS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([escape_cell(c) for c in columns])
    for r in items:
        cells = list(r.values) + [""] * (width - len(r.values))
        writer.writerow([escape_cell(str(c)) for c in cells] + [str(r.row), r.reason, escape_cell(r.detail)])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
