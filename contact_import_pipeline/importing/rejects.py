"""Rows set aside (failed or skipped) and the rejects file that lists them.

Rejected rows are kept column-wise as Arrow-backed text: re-importing a million-row file sets
aside every row, and a million Python lists of cells would cost gigabytes.

The rejects file holds every failed or skipped row with its original values plus ``row``,
``reason`` and ``detail``. Cells are escaped against formula injection (OWASP "CSV injection"):
a cell starting with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'`` so spreadsheets
show it as text. Phones starting with ``+`` are escaped too; the quote is visible, the value intact.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from contact_import_pipeline.model import Reject
from contact_import_pipeline.vocabulary import SKIP_REASONS

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FORMULA_PATTERN = r"^[=+\-@\t\r]"
EXTRA_COLUMNS = ("row", "reason", "detail")


def _value_column(i: int) -> str:
    return f"v{i}"


class RejectTable:
    """Rejected rows: ``row``, ``reason``, ``detail``, ``nvalues`` and cells ``v0``..``v<width-1>``."""

    def __init__(self, frame: pd.DataFrame | None = None, width: int = 0) -> None:
        columns = ["row", "reason", "detail", "nvalues", *(_value_column(i) for i in range(width))]
        self.width = width
        self.frame = frame if frame is not None else pd.DataFrame({c: pd.Series([], dtype="str") for c in columns})
        if not all(self.frame[c].dtype == "int64" for c in ("row", "nvalues")):  # astype copies: only when needed
            self.frame = self.frame.astype({"row": "int64", "nvalues": "int64"})

    @classmethod
    def from_rejects(cls, rejects: Iterable[Reject]) -> RejectTable:
        """A table of a few rows given one by one (reader rejects, late conflicts)."""
        items = list(rejects)
        width = max([len(r.values) for r in items], default=0)
        data: dict[str, object] = {
            "row": [r.row for r in items],
            "reason": pd.Series([r.reason for r in items], dtype="str"),
            "detail": pd.Series([r.detail for r in items], dtype="str"),
            "nvalues": [len(r.values) for r in items],
        }
        for i in range(width):
            data[_value_column(i)] = pd.Series([r.values[i] if i < len(r.values) else "" for r in items], dtype="str")
        return cls(pd.DataFrame(data), width)

    @classmethod
    def from_raw(
        cls, raw: pd.DataFrame, positions: np.ndarray, rows: np.ndarray, reason: str, details: pd.Series | str
    ) -> RejectTable:
        """Rows of the reader's frame (by position) set aside for one reason, without leaving Arrow."""
        picked = raw.iloc[positions].reset_index(drop=True)
        picked.columns = [_value_column(i) for i in range(raw.shape[1])]
        head = pd.DataFrame(
            {
                "row": np.asarray(rows, dtype=np.int64),
                "reason": pd.Series([reason] * len(picked), dtype="str"),
                "detail": pd.Series(details, index=picked.index, dtype="str")
                if not isinstance(details, str)
                else pd.Series([details] * len(picked), dtype="str"),
                "nvalues": np.full(len(picked), raw.shape[1], dtype=np.int64),
            }
        )
        return cls(pd.concat([head, picked], axis=1), raw.shape[1])

    @classmethod
    def concat(cls, tables: Sequence[RejectTable]) -> RejectTable:
        """All rows of several tables, in file order."""
        width = max([t.width for t in tables], default=0)
        frames = [t._padded(width) for t in tables if len(t)]
        if not frames:
            return cls(width=width)
        frame = pd.concat(frames, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
        return cls(frame, width)

    def _padded(self, width: int) -> pd.DataFrame:
        frame = self.frame
        for i in range(self.width, width):
            frame = frame.assign(**{_value_column(i): pd.Series([""] * len(frame), index=frame.index, dtype="str")})
        return frame

    def __len__(self) -> int:
        return len(self.frame)

    def __iter__(self) -> Iterator[Reject]:
        values = self.frame[[_value_column(i) for i in range(self.width)]].to_numpy(dtype=object)
        for (row, reason, detail, nvalues), cells in zip(
            self.frame[["row", "reason", "detail", "nvalues"]].itertuples(index=False, name=None), values, strict=True
        ):
            yield Reject(row=int(row), reason=reason, detail=detail, values=list(cells[:nvalues]))

    def counts(self, skipped: bool) -> dict[str, int]:
        """Rows per reason, for skipped (duplicate) or failed reasons."""
        reasons = self.frame["reason"]
        mask = reasons.isin(SKIP_REASONS) if skipped else ~reasons.isin(SKIP_REASONS)
        return {str(k): int(v) for k, v in sorted(reasons[mask].value_counts().items())}

    def first_errors(self, limit: int) -> list[dict[str, object]]:
        """The first failed rows (not duplicates) as {row, reason, detail}."""
        failed = self.frame.loc[~self.frame["reason"].isin(SKIP_REASONS), ["row", "reason", "detail"]].head(limit)
        return [
            {"row": int(r), "reason": reason, "detail": detail} for r, reason, detail in failed.itertuples(index=False)
        ]


def escape_cell(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def _escape_column(column: pd.Series) -> pd.Series:
    column = column.astype("str")
    return column.where(~column.str.contains(FORMULA_PATTERN, regex=True), "'" + column)


def rejects_csv(header: Sequence[str], rejects: RejectTable | Iterable[Reject]) -> bytes:
    """UTF-8 (with BOM, so Excel picks the encoding) CSV of rejected rows.

    Rows with more fields than the header keep their extra fields under ``extra_<n>`` columns.
    """
    table = rejects if isinstance(rejects, RejectTable) else RejectTable.from_rejects(rejects)
    width = max(len(header), table.width)
    names = [escape_cell(c) for c in header] + [f"extra_{i}" for i in range(len(header) + 1, width + 1)]
    frame = table._padded(width)
    out = pd.DataFrame({i: _escape_column(frame[_value_column(i)]) for i in range(width)})
    out[width] = frame["row"].astype("int64")
    out[width + 1] = frame["reason"]
    out[width + 2] = _escape_column(frame["detail"])
    # Encoded as it is written: a text buffer would hold the CSV as 4 bytes a character once one
    # cell has an emoji or CJK text (~80 MB more at a million rows).
    buffer = io.BytesIO()
    out.to_csv(buffer, index=False, header=[*names, *EXTRA_COLUMNS], lineterminator="\r\n", encoding="utf-8-sig")
    return buffer.getvalue()
