"""Diagnoses: how a file was understood, and the likely mistake behind a bad import, named with
its fix and its numbers.

The usual bad import does not crash: UK numbers read with region US, a fax column taken for the
phone, a semicolon file read with commas. Each function here looks at what a stage already has
(the normalized import, or its final counts), cheaply, and returns nothing when the file looks as
intended. The assets report these as asset checks; the CLI, the ledger and ``--json`` carry them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import phonenumbers

from contact_import_pipeline.mapping.columns import ColumnPlan
from contact_import_pipeline.mapping.phones import normalize_phone
from contact_import_pipeline.model import Diagnosis
from contact_import_pipeline.vocabulary import DiagnosisCode, Reason

if TYPE_CHECKING:
    from contact_import_pipeline.importing.stages import NormalizedImport

# Regions tried for phones invalid in the default one: where most CRM contacts outside the US live.
CANDIDATE_REGIONS = (
    "US", "CA", "GB", "IE", "AU", "NZ", "IN", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "NO", "DK",
    "PL", "PT", "BR", "MX", "AR", "CO", "ZA", "NG", "KE", "AE", "SA", "IL", "TR", "PH", "SG", "MY", "JP", "KR",
)  # fmt: skip
# A phone-like cell: at least 7 digits (the shortest national numbers), whatever the punctuation.
_PHONE_LIKE = r"(?:\D*\d){7}"
# Cells sampled per column (phone column, encoding, delimiter): enough to tell, cheap on 1M rows.
SAMPLE_ROWS = 2_000
REGION_SAMPLE = 500  # distinct invalid phones tried in every candidate region
EXACT_CELLS = 20_000  # distinct invalid phones counted one by one; more are estimated from this many rows
# UTF-8 read as Windows-1252: a lead byte (Â, Ã, â€) followed by what a continuation byte becomes.
_CONTINUATION = "\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"
MOJIBAKE = re.compile(f"[ÂÃ][{_CONTINUATION}]|â€[{_CONTINUATION}]")
OTHER_DELIMITERS = {";": "semicolon", "\t": "TAB", "|": "pipe"}  # not ",": headers such as "Last, First" hold it
# How much evidence a diagnosis needs: silent on honest files with a few bad rows.
MIN_ROWS = 5
INVALID_SHARE = 0.5  # default region: more than this share of the phones is invalid ("most")...
SAVED_SHARE = 0.5  # ...and another region makes at least this share of those valid
BETTER_COLUMN_FACTOR = 2  # phone column: another column gives at least twice the valid phones...
BETTER_COLUMN_SHARE = 0.2  # ...and that many more valid phones than this share of the rows
DELIMITER_SHARE = 0.5  # delimiter: at least this share of the column's values hold the other delimiter
WHOLE_FILE_SHARE = 0.9  # already imported / mostly failed: this share of the rows


def of_normalized(item: NormalizedImport) -> list[Diagnosis]:
    """What the mapped and normalized file says: region, phone column, delimiter and encoding."""
    return [
        found
        for found in (
            default_region(item),
            phone_column(item),
            delimiter(item.header, item.raw, item.rejects.counts(skipped=False).get(Reason.WRONG_FIELD_COUNT, 0)),
            encoding(item.raw),
        )
        if found is not None
    ]


def column_mapping(header: Sequence[str], plan: ColumnPlan, explicit: dict[str, str]) -> dict[str, object]:
    """How the file's headers were understood: header → field, the phone column and why, unmapped headers."""
    fields: dict[str, str] = {header[position]: field for field, position in plan.fields.items()}
    if plan.full_name is not None and "firstname" not in plan.fields and "lastname" not in plan.fields:
        fields[header[plan.full_name]] = "full_name (split into firstname, lastname)"
    if plan.country is not None:
        fields[header[plan.country]] = "country (region of the row's phone)"
    phones = [header[position] for position in plan.phones]
    for rank, name in enumerate(phones):
        fields[name] = "phone" if rank == 0 else f"phone (when {phones[0]!r} is empty)"
    if "phone" in explicit:
        why = "column_mapping names it"
    elif len(phones) > 1:
        why = f"its header is a phone header and mobile ones come first; {len(phones) - 1} more used when it is empty"
    else:
        why = "its header is a phone header"
    return {
        "fields": fields,
        "phone_column": {"header": phones[0], "why": why, "fallbacks": phones[1:]},
        "unmapped": [name for name in header if name not in fields],
    }


def _invalid_phone_cells(item: NormalizedImport) -> pd.Series:
    """The phone cell of each row that failed ``invalid_phone`` and has no country of its own."""
    frame = item.rejects.frame
    invalid = frame[frame["reason"] == Reason.INVALID_PHONE]
    cells = pd.Series("", index=invalid.index, dtype=object)
    for position in reversed(item.plan.phones):  # the first non-empty phone column wins, as in apply_plan
        column = invalid.get(f"v{position}")
        if column is not None:
            values = column.fillna("").astype(str).str.strip()
            cells = values.where(values != "", cells)
    if item.plan.country is not None and f"v{item.plan.country}" in invalid:
        cells = cells[invalid[f"v{item.plan.country}"].fillna("").astype(str).str.strip() == ""]
    return cells[cells != ""]


def _national_prefix(region: str) -> str:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return (metadata.national_prefix or "") if metadata is not None else ""


def _written_in(cell: str, region: str) -> bool:
    """Whether ``cell`` is a valid number of ``region`` written as its people write it: with the
    region's trunk prefix ("07911 123456" in GB). Without that evidence a short or garbled US number
    that happens to be valid somewhere (7 digits in DE, 9 in FR) would name a wrong region."""
    prefix = _national_prefix(region)
    digits = re.sub(r"\D", "", cell)
    return (
        bool(prefix)
        and not cell.lstrip().startswith(("+", "00"))
        and digits.startswith(prefix)
        and normalize_phone(cell, region) is not None
    )


def default_region(item: NormalizedImport) -> Diagnosis | None:
    """Most phones invalid in the default region but valid national numbers of another: name it and
    what it saves (counted exactly up to EXACT_CELLS distinct cells, estimated from a sample above)."""
    cells = _invalid_phone_cells(item)
    with_phone = len(item.contacts) + len(cells)
    if len(cells) < MIN_ROWS or len(cells) <= INVALID_SHARE * with_phone:
        return None
    region = item.options.default_region
    sample = pd.unique(cells)[:REGION_SAMPLE]
    valid_in = {
        candidate: sum(_written_in(str(cell), candidate) for cell in sample)
        for candidate in CANDIDATE_REGIONS
        if candidate != region
    }
    best = max(valid_in, key=lambda candidate: valid_in[candidate])  # ties: the first candidate listed
    if valid_in[best] < SAVED_SHARE * len(sample):
        return None
    counts = cells.value_counts()
    estimated = len(counts) > EXACT_CELLS
    if estimated:  # a fixed sample of the rows: the same file always gives the same numbers
        rows = cells.sample(EXACT_CELLS, random_state=0)
        share = sum(_written_in(str(cell), best) for cell in rows) / len(rows)
        saved = round(share * len(cells))
    else:
        saved = int(sum(n for cell, n in counts.items() if _written_in(str(cell), best)))
    if saved < SAVED_SHARE * len(cells):
        return None
    about = "about " if estimated else ""
    return Diagnosis(
        DiagnosisCode.DEFAULT_REGION,
        f"{about}{saved} of {len(cells)} invalid phones are valid {best} numbers: set default_region={best} "
        f"(--region {best}) and import the file again",
        {
            "invalid_phones": len(cells),
            "valid_in_region": saved,
            "region": best,
            "default_region": region,
            "estimated": int(estimated),
        },
    )


def _valid_phones(cells: pd.Series, region: str) -> int:
    return sum(normalize_phone(cell, region) is not None for cell in cells)


def phone_column(item: NormalizedImport) -> Diagnosis | None:
    """Another column gives many more valid phones than the one used: name it and how to map it."""
    sample = item.raw.head(SAMPLE_ROWS)
    if sample.empty:
        return None
    region = item.options.default_region

    def cells(position: int) -> pd.Series:
        return sample[str(position)].fillna("").astype(str).str.strip()

    # The phones the column used gave in these rows, as normalization already found them.
    used = int((item.contacts["row"] <= item.raw_rows[len(sample) - 1]).sum())
    best, best_valid = None, used
    for position, name in enumerate(item.header):
        if position in item.plan.phones or str(position) not in sample:
            continue
        column = cells(position)
        if column.str.match(_PHONE_LIKE).sum() <= used:  # cheap: only phone-like columns are parsed
            continue
        valid = _valid_phones(column, region)
        if valid > best_valid:
            best, best_valid = name, valid
    if (
        best is None
        or best_valid < BETTER_COLUMN_FACTOR * used
        or best_valid - used < BETTER_COLUMN_SHARE * len(sample)
    ):
        return None
    chosen_name = item.header[item.plan.phones[0]]
    return Diagnosis(
        DiagnosisCode.PHONE_COLUMN,
        f"column {best!r} has {best_valid} valid phones in the first {len(sample)} rows, the phone column used "
        f"({chosen_name!r}) {used}: map it with column_mapping {json.dumps({'phone': best})} (--map phone={best!r})",
        {"rows_checked": len(sample), "column": best, "valid_phones": best_valid, "used_column": chosen_name,
         "used_valid_phones": used},
    )  # fmt: skip


def delimiter(header: Sequence[str], raw: pd.DataFrame, ragged_rows: int = 0) -> Diagnosis | None:
    """A header holding another delimiter, with most of its column's values splitting into as many
    parts as the header (or most rows of the wrong width, ``ragged_rows``): the file was split with
    the wrong delimiter. A header such as "Tags; Groups" over cells listing several tags is not."""
    sample = raw.head(SAMPLE_ROWS)
    rows = len(raw) + ragged_rows
    for position, name in enumerate(header):
        for mark, word in OTHER_DELIMITERS.items():
            if mark not in name:
                continue
            values = sample[str(position)].fillna("").astype(str) if str(position) in sample else pd.Series([])
            parts = len([part for part in name.split(mark) if part.strip()])
            if parts < 2:
                continue
            holding = int((values.str.count(re.escape(mark)) == parts - 1).sum()) if len(values) else 0
            by_values = holding >= MIN_ROWS and holding >= DELIMITER_SHARE * len(values)
            by_width = ragged_rows >= MIN_ROWS and ragged_rows >= DELIMITER_SHARE * rows
            if by_values or by_width:
                evidence = (
                    f"{holding} of its first {len(values)} values hold it"
                    if by_values
                    else f"{ragged_rows} of {rows} rows have the wrong number of fields"
                )
                return Diagnosis(
                    DiagnosisCode.DELIMITER,
                    f"header {name!r} holds the {word} delimiter and {evidence}: the file looks {word}-separated; "
                    "save it with one delimiter throughout (quoting cells that contain it) and import it again",
                    {
                        "column": name,
                        "delimiter": mark,
                        "rows_checked": len(values),
                        "rows_with_delimiter": holding,
                        "ragged_rows": ragged_rows,
                    },
                )
    return None


def encoding(raw: pd.DataFrame) -> Diagnosis | None:
    """Cells holding UTF-8 that was once read as Windows-1252 ("JosÃ©" for "José")."""
    sample = raw.head(SAMPLE_ROWS)
    cells, example = 0, ""
    for column in sample.columns:
        values = sample[column].fillna("").astype(str)
        hits = values.str.contains(MOJIBAKE)
        if hits.any():
            cells += int(hits.sum())
            example = example or str(values[hits].iloc[0])
    if cells < MIN_ROWS:
        return None
    return Diagnosis(
        DiagnosisCode.ENCODING,
        f"{cells} cells in the first {len(sample)} rows look like UTF-8 text that was saved as Windows-1252 "
        f"(e.g. {example[:40]!r}): fix the export's encoding (save as UTF-8) and import it again",
        {"rows_checked": len(sample), "cells": cells},
    )


def of_outcome(
    total: int, skipped_by_reason: Mapping[str, int], failed_by_reason: Mapping[str, int], workspace_id: str
) -> list[Diagnosis]:
    """Whole-file problems seen in the final (or predicted) counts: a file imported twice, or nearly every row failing."""
    out = []
    existing = skipped_by_reason.get(Reason.DUPLICATE_EXISTING, 0)
    if total >= MIN_ROWS and existing >= WHOLE_FILE_SHARE * total:
        out.append(
            Diagnosis(
                DiagnosisCode.ALREADY_IMPORTED,
                f"{existing} of {total} rows are already contacts of workspace {workspace_id}: was this file "
                "imported before? (contact-import imports --workspace lists earlier imports; "
                "--on-duplicate update fills their empty fields)",
                {"rows": total, "duplicate_existing": existing},
            )
        )
    failed = sum(failed_by_reason.values())
    if total >= MIN_ROWS and failed >= WHOLE_FILE_SHARE * total:
        reason, count = max(failed_by_reason.items(), key=lambda pair: pair[1])
        fix = {
            Reason.INVALID_PHONE: "check the phone column and the default region",
            Reason.MISSING_PHONE: "the phone column is mostly empty: map another with --map phone=<header>",
        }.get(Reason(reason), "check how the file was exported")
        out.append(
            Diagnosis(
                DiagnosisCode.MOSTLY_FAILED,
                f"{failed} of {total} rows failed, {count} as {reason}: {fix}",
                {"rows": total, "failed": failed, "reason": reason, "reason_rows": count},
            )
        )
    return out
