"""The import's stages as plain functions: normalize, dedupe, plan batches, summarize.

Data moves forward only. Each stage returns a value that carries what the earlier stages learned
(options, row reasons, timings), so every count can be traced to rows and every row to a reason.
The Dagster assets in ``assets.py`` only call these.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contact_import_pipeline.columns import CONTACT_FIELDS, ColumnPlan, apply_plan, plan_columns
from contact_import_pipeline.contacts_store import BATCH_COLUMNS, ON_DUPLICATE_UPDATE, BatchOutcome, ContactsStore
from contact_import_pipeline.csv_reading import CsvTable
from contact_import_pipeline.options import ResolvedOptions
from contact_import_pipeline.phones import normalize_phones
from contact_import_pipeline.settings import FIRST_ERRORS

SKIP_REASONS = ("duplicate_in_file", "duplicate_existing")


@dataclass(frozen=True)
class Reject:
    """A row that was not imported: failed (bad data) or skipped (duplicate), with its raw values."""

    row: int
    reason: str
    detail: str
    values: list[str]

    @property
    def skipped(self) -> bool:
        return self.reason in SKIP_REASONS


@dataclass
class RawImport:
    """Output of ``raw_csv``: the resolved options and the decoded table."""

    options: ResolvedOptions
    table: CsvTable
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class NormalizedImport:
    """Output of ``normalized_contacts``: mapped fields and E.164 phones for rows that have one."""

    options: ResolvedOptions
    source: str
    header: list[str]
    plan: ColumnPlan
    raw: pd.DataFrame  # the reader's frame, kept so later rejects can carry original values
    raw_rows: np.ndarray  # line number of each row of ``raw`` (ascending)
    contacts: pd.DataFrame  # CONTACT_FIELDS + phone_number + phone_raw + row, valid phones only
    rejects: list[Reject]
    total: int
    encoding: str
    delimiter: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class DedupedImport:
    """Output of ``deduped_contacts``: the contacts to insert and every row set aside so far."""

    options: ResolvedOptions
    source: str
    header: list[str]
    plan: ColumnPlan
    contacts: pd.DataFrame
    rejects: list[Reject]
    total: int
    encoding: str
    delimiter: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One insert batch: a transaction and a Dagster step.

    The rows travel as a small Arrow-backed frame (BATCH_COLUMNS + row), not as Python tuples:
    a million contacts as tuples of str objects would cost gigabytes while planning.
    """

    import_id: str
    index: int
    count: int
    options: ResolvedOptions
    frame: pd.DataFrame
    skipped_before: int  # rows set aside as duplicates before inserting (for live progress)
    failed_before: int  # rows that failed before inserting

    @property
    def rows(self) -> list[tuple[str, ...]]:
        return list(self.frame[list(BATCH_COLUMNS)].itertuples(index=False, name=None))

    @property
    def row_numbers(self) -> list[int]:
        return self.frame["row"].tolist()


@dataclass(frozen=True)
class BatchResult:
    """What an insert step returns to ``summarize``."""

    index: int
    outcome: BatchOutcome
    seconds: float


def _raw_values(raw: pd.DataFrame, positions: np.ndarray) -> list[list[str]]:
    if len(positions) == 0:
        return []
    return raw.iloc[positions].to_numpy(dtype=object).tolist()


def normalize(raw_import: RawImport) -> NormalizedImport:
    """Map headers to contact fields and phones to E.164; rows without a valid phone fail."""
    started = time.perf_counter()
    options, table = raw_import.options, raw_import.table
    plan = plan_columns(table.header, options.column_mapping, table.source)
    mapped = apply_plan(table.frame, plan)
    e164, reasons = normalize_phones(
        mapped["phone_raw"].tolist(), mapped["country_raw"].tolist(), options.default_region
    )
    # Arrow-backed text, like every other column: object columns of str cost ~60 bytes a cell.
    mapped["phone_number"] = pd.Series(e164, index=mapped.index, dtype="str")
    mapped["row"] = table.rows
    bad = np.fromiter((i for i, reason in enumerate(reasons) if reason is not None), dtype=np.int64)
    rejects = [
        Reject(row=r.row, reason=r.reason, detail=r.detail, values=list(r.values)) for r in table.rejects
    ]
    phone_raw = mapped["phone_raw"].to_numpy(dtype=object)
    for pos, values in zip(bad, _raw_values(table.frame, bad)):
        reason = reasons[pos]
        detail = "no phone number" if reason == "missing_phone" else f"not a valid phone number: {phone_raw[pos]!r}"
        rejects.append(Reject(row=int(table.rows[pos]), reason=reason, detail=detail, values=values))
    good = np.ones(len(mapped), dtype=bool)
    good[bad] = False
    contacts = mapped.loc[good, [*CONTACT_FIELDS, "phone_number", "phone_raw", "row"]].reset_index(drop=True)
    timings = dict(raw_import.timings, phones=time.perf_counter() - started)
    return NormalizedImport(
        options=options,
        source=table.source,
        header=table.header,
        plan=plan,
        raw=table.frame,
        raw_rows=table.rows,
        contacts=contacts,
        rejects=rejects,
        total=len(table.frame) + len(table.rejects),
        encoding=table.encoding,
        delimiter=table.delimiter,
        timings=timings,
    )


def dedupe(normalized: NormalizedImport, store: ContactsStore) -> DedupedImport:
    """Skip later copies of a phone within the file, then phones already in the workspace.

    Only this file's phones are looked up, so the cost follows the file, not the workspace.
    With ``on_duplicate="update"`` phones already in the workspace stay in the batches, where the
    insert merges them into the existing contacts.
    """
    started = time.perf_counter()
    contacts = normalized.contacts
    rejects = list(normalized.rejects)
    in_file = contacts.duplicated("phone_number", keep="first").to_numpy()
    first_row = contacts.drop_duplicates("phone_number").set_index("phone_number")["row"]
    existing = (
        set()
        if normalized.options.on_duplicate == ON_DUPLICATE_UPDATE
        else store.existing_phones(normalized.options.workspace_id, contacts.loc[~in_file, "phone_number"].tolist())
    )
    is_existing = contacts["phone_number"].isin(existing).to_numpy() & ~in_file
    for mask, reason in ((in_file, "duplicate_in_file"), (is_existing, "duplicate_existing")):
        picked = contacts.loc[mask]
        if picked.empty:
            continue
        positions = np.searchsorted(normalized.raw_rows, picked["row"].to_numpy())
        for row, phone, values in zip(picked["row"].tolist(), picked["phone_number"].tolist(), _raw_values(normalized.raw, positions)):
            detail = (
                f"same phone {phone} as row {int(first_row[phone])}"
                if reason == "duplicate_in_file"
                else f"{phone} already exists in workspace {normalized.options.workspace_id}"
            )
            rejects.append(Reject(row=int(row), reason=reason, detail=detail, values=values))
    keep = ~(in_file | is_existing)
    timings = dict(normalized.timings, dedup=time.perf_counter() - started)
    return DedupedImport(
        options=normalized.options,
        source=normalized.source,
        header=normalized.header,
        plan=normalized.plan,
        contacts=contacts.loc[keep].reset_index(drop=True),
        rejects=sorted(rejects, key=lambda r: r.row),
        total=normalized.total,
        encoding=normalized.encoding,
        delimiter=normalized.delimiter,
        timings=timings,
    )


def plan_batches(deduped: DedupedImport, import_id: str) -> list[Batch]:
    """Split the contacts to insert into batches; an empty import still plans one empty batch.

    The empty batch keeps the run's shape the same for every file (summarize always runs after
    at least one recorded outcome), and costs one no-op transaction.
    """
    frame = deduped.contacts
    size = deduped.options.batch_size
    count = max(1, -(-len(frame) // size))
    columns = [*BATCH_COLUMNS, "row"]
    skipped_before = sum(1 for r in deduped.rejects if r.skipped)
    failed_before = len(deduped.rejects) - skipped_before
    batches = []
    for index in range(count):
        lo, hi = index * size, min((index + 1) * size, len(frame))
        batches.append(
            Batch(
                import_id=import_id,
                index=index,
                count=count,
                options=deduped.options,
                frame=frame.iloc[lo:hi][columns].reset_index(drop=True),
                skipped_before=skipped_before,
                failed_before=failed_before,
            )
        )
    return batches


@dataclass
class Summary:
    """The final counts of one import, in the reference design's terms plus reasons."""

    status: str
    workspace_id: str
    import_tag: str
    file: str
    total: int
    imported: int
    updated: int
    skipped: int
    failed: int
    batches: int
    skipped_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    errors: list[dict[str, object]]
    rejects: list[Reject]
    encoding: str
    delimiter: str
    timings: dict[str, float]

    @property
    def processed(self) -> int:
        return self.imported + self.updated + self.skipped + self.failed


class AccountingError(RuntimeError):
    """The counts do not add up, or a planned batch has no recorded outcome: never report success."""


def summarize(deduped: DedupedImport, planned: int, outcomes: dict[int, BatchOutcome], insert_seconds: float) -> Summary:
    """Total the recorded batch outcomes and the rows set aside; fail if anything is missing.

    ``outcomes`` come from the database, not from Dagster, because a re-execution can skip steps
    that never ran and still report success.
    """
    missing = sorted(set(range(planned)) - set(outcomes))
    if missing:
        shown = ", ".join(str(i) for i in missing[:20])
        raise AccountingError(
            f"{len(missing)} of {planned} planned batches have no recorded outcome (batch {shown}); "
            "re-execute the run with ALL_STEPS (inserts are idempotent)"
        )
    rejects = list(deduped.rejects)
    by_row = deduped.contacts.set_index("row")
    for index in sorted(outcomes):
        for row in outcomes[index].conflict_rows:
            record = by_row.loc[row]
            rejects.append(
                Reject(
                    row=int(row),
                    reason="duplicate_existing",
                    detail=f"{record['phone_number']} was added to the workspace by another import meanwhile",
                    values=_values_from_plan(deduped, record),
                )
            )
    rejects.sort(key=lambda r: r.row)
    imported = sum(o.imported for o in outcomes.values())
    updated = sum(o.updated for o in outcomes.values())
    skipped_by = Counter(r.reason for r in rejects if r.skipped)
    failed_by = Counter(r.reason for r in rejects if not r.skipped)
    skipped, failed = sum(skipped_by.values()), sum(failed_by.values())
    if imported + updated + skipped + failed != deduped.total:
        raise AccountingError(
            f"counts do not add up for {deduped.source}: imported {imported} + updated {updated} + skipped "
            f"{skipped} + failed {failed} != total {deduped.total}"
        )
    errors = [
        {"row": r.row, "reason": r.reason, "detail": r.detail} for r in rejects if not r.skipped
    ][:FIRST_ERRORS]
    return Summary(
        status="completed",
        workspace_id=deduped.options.workspace_id,
        import_tag=deduped.options.import_tag,
        file=deduped.options.partition_key,
        total=deduped.total,
        imported=imported,
        updated=updated,
        skipped=skipped,
        failed=failed,
        batches=sum(1 for o in outcomes.values() if o.rows),
        skipped_by_reason=dict(sorted(skipped_by.items())),
        failed_by_reason=dict(sorted(failed_by.items())),
        errors=errors,
        rejects=rejects,
        encoding=deduped.encoding,
        delimiter=deduped.delimiter,
        timings=dict(deduped.timings, inserts=insert_seconds),
    )


def _values_from_plan(deduped: DedupedImport, record: pd.Series) -> list[str]:
    """Rebuild a row's original cells from its mapped fields (for rows rejected at insert time)."""
    values = [""] * len(deduped.header)
    for name, position in deduped.plan.fields.items():
        values[position] = str(record[name])
    if deduped.plan.full_name is not None:
        values[deduped.plan.full_name] = f"{record['firstname']} {record['lastname']}".strip()
    if deduped.plan.phones:
        values[deduped.plan.phones[0]] = str(record["phone_raw"])
    return values
