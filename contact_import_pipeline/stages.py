"""The import's stages as plain functions: normalize, dedupe, plan batches, summarize.

Data moves forward only. Each stage returns a value that carries what the earlier stages learned
(options, row reasons, timings), so every count can be traced to rows and every row to a reason.
The Dagster assets in ``assets.py`` only call these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from contact_import_pipeline.columns import CONTACT_FIELDS, ColumnPlan, apply_plan, plan_columns
from contact_import_pipeline.contacts_store import BATCH_COLUMNS, ON_DUPLICATE_UPDATE, BatchOutcome, ContactsStore
from contact_import_pipeline.csv_reading import CsvTable, text_column
from contact_import_pipeline.options import ResolvedOptions
from contact_import_pipeline.phones import normalize_phone_column
from contact_import_pipeline.rejects import Reject, RejectTable
from contact_import_pipeline.settings import FIRST_ERRORS


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
    rejects: RejectTable
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
    rejects: RejectTable
    total: int
    encoding: str
    delimiter: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """One insert batch: a transaction and a Dagster step.

    The rows travel as a small Arrow-backed frame (BATCH_COLUMNS + row), not as Python tuples:
    a million contacts as tuples of str objects would cost gigabytes while planning, and the
    insert streams the frame to the database as CSV without building them.
    """

    import_id: str
    index: int
    count: int
    options: ResolvedOptions
    frame: pd.DataFrame
    skipped_before: int  # rows set aside as duplicates before inserting (for live progress)
    failed_before: int  # rows that failed before inserting
    total: int  # data rows in the file


@dataclass(frozen=True)
class BatchResult:
    """What an insert step returns to ``summarize``."""

    index: int
    outcome: BatchOutcome
    started_at: float  # wall-clock times, so summarize can tell how long the batches took together
    finished_at: float


def insert_wall_seconds(results: list[BatchResult]) -> float:
    """From the first batch's start to the last one's end: batches overlap, so their own
    durations would add up to more than the time they took."""
    if not results:
        return 0.0
    return max(r.finished_at for r in results) - min(r.started_at for r in results)


def _phones(mapped: pd.DataFrame, default_region: str) -> tuple[pd.Series, np.ndarray]:
    """E.164 (Arrow text, '' when none) and reason (object array, None when valid) per row."""
    e164, why = normalize_phone_column(mapped["phone_raw"], mapped["country_raw"], default_region)
    phones = text_column([pc.fill_null(chunk, "") for chunk in e164])
    phones.index = mapped.index
    return phones, why


def normalize(raw_import: RawImport) -> NormalizedImport:
    """Map headers to contact fields and phones to E.164; rows without a valid phone fail."""
    started = time.perf_counter()
    options, table = raw_import.options, raw_import.table
    plan = plan_columns(table.header, options.column_mapping, table.source)
    mapped = apply_plan(table.frame, plan)
    mapped["phone_number"], reasons = _phones(mapped, options.default_region)
    mapped["row"] = table.rows
    rejects = [RejectTable.from_rejects(
        Reject(row=r.row, reason=r.reason, detail=r.detail, values=list(r.values)) for r in table.rejects
    )]
    for reason in ("missing_phone", "invalid_phone"):
        positions = np.flatnonzero(reasons == reason)
        detail = (
            "no phone number"
            if reason == "missing_phone"
            else "not a valid phone number: '" + mapped["phone_raw"].iloc[positions].reset_index(drop=True) + "'"
        )
        rejects.append(RejectTable.from_raw(table.frame, positions, table.rows[positions], reason, detail))
    good = pd.isna(reasons) | (reasons == None)  # noqa: E711 - elementwise test of an object array
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
        rejects=RejectTable.concat(rejects),
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
    workspace_id = normalized.options.workspace_id
    phones = contacts["phone_number"]
    rows = contacts["row"].to_numpy()
    # Codes instead of hashing Python strings: Arrow's dictionary encoding keeps this in C.
    codes, _ = pd.factorize(phones)
    _, first_position = np.unique(codes, return_index=True)
    in_file = np.ones(len(contacts), dtype=bool)
    in_file[first_position] = False
    existing = (
        set()
        if normalized.options.on_duplicate == ON_DUPLICATE_UPDATE
        else store.existing_phones(workspace_id, phones[~in_file].reset_index(drop=True))
    )
    is_existing = (phones.isin(existing).to_numpy() & ~in_file) if existing else np.zeros(len(contacts), dtype=bool)
    rejects = [normalized.rejects]
    if in_file.any():
        first_row = rows[first_position][codes[in_file]]
        detail = "same phone " + phones[in_file].reset_index(drop=True) + " as row " + pd.Series(first_row).astype("str")
        rejects.append(_raw_rejects(normalized, rows[in_file], "duplicate_in_file", detail))
    if is_existing.any():
        dups = contacts.loc[is_existing, ["phone_number", "row"]].reset_index(drop=True)
        detail = dups["phone_number"] + f" already exists in workspace {workspace_id}"
        rejects.append(_raw_rejects(normalized, dups["row"].to_numpy(), "duplicate_existing", detail))
    keep = ~(in_file | is_existing)
    timings = dict(normalized.timings, dedup=time.perf_counter() - started)
    return DedupedImport(
        options=normalized.options,
        source=normalized.source,
        header=normalized.header,
        plan=normalized.plan,
        contacts=contacts.loc[keep].reset_index(drop=True),
        rejects=RejectTable.concat(rejects),
        total=normalized.total,
        encoding=normalized.encoding,
        delimiter=normalized.delimiter,
        timings=timings,
    )


def _raw_rejects(normalized: NormalizedImport, rows: np.ndarray, reason: str, detail: pd.Series) -> RejectTable:
    positions = np.searchsorted(normalized.raw_rows, rows)
    return RejectTable.from_raw(normalized.raw, positions, rows, reason, detail)


def plan_batches(deduped: DedupedImport, import_id: str) -> list[Batch]:
    """Split the contacts to insert into batches; an empty import still plans one empty batch.

    The empty batch keeps the run's shape the same for every file (summarize always runs after
    at least one recorded outcome), and costs one no-op transaction.
    """
    frame = deduped.contacts
    size = deduped.options.batch_size
    count = max(1, -(-len(frame) // size))
    columns = [*BATCH_COLUMNS, "row"]
    skipped_before = sum(deduped.rejects.counts(skipped=True).values())
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
                total=deduped.total,
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
    rejects: RejectTable
    encoding: str
    delimiter: str
    timings: dict[str, float]

    @property
    def processed(self) -> int:
        return self.imported + self.updated + self.skipped + self.failed

    def counts(self) -> dict[str, int]:
        """The progress counts, under the names of the progress schema."""
        return {
            "total": self.total,
            "processed": self.processed,
            "imported": self.imported,
            "updated": self.updated,
            "skipped": self.skipped,
            "failed": self.failed,
        }

    def as_dict(self) -> dict[str, object]:
        """Everything but the rejected rows themselves: the ``contacts`` asset's value."""
        return {
            "status": self.status,
            "workspace_id": self.workspace_id,
            "import_tag": self.import_tag,
            "file": self.file,
            **self.counts(),
            "batches": self.batches,
            "skipped_by_reason": self.skipped_by_reason,
            "failed_by_reason": self.failed_by_reason,
            "errors": self.errors,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


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
    late: list[Reject] = []
    conflict_rows = [row for index in sorted(outcomes) for row in outcomes[index].conflict_rows]
    if conflict_rows:
        by_row = deduped.contacts.set_index("row")
        for row in conflict_rows:
            record = by_row.loc[row]
            late.append(
                Reject(
                    row=int(row),
                    reason="duplicate_existing",
                    detail=f"{record['phone_number']} was added to the workspace by another import meanwhile",
                    values=_values_from_plan(deduped, record),
                )
            )
    rejects = RejectTable.concat([deduped.rejects, RejectTable.from_rejects(late)]) if late else deduped.rejects
    imported = sum(o.imported for o in outcomes.values())
    updated = sum(o.updated for o in outcomes.values())
    skipped_by, failed_by = rejects.counts(skipped=True), rejects.counts(skipped=False)
    skipped, failed = sum(skipped_by.values()), sum(failed_by.values())
    if imported + updated + skipped + failed != deduped.total:
        raise AccountingError(
            f"counts do not add up for {deduped.source}: imported {imported} + updated {updated} + skipped "
            f"{skipped} + failed {failed} != total {deduped.total}"
        )
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
        skipped_by_reason=skipped_by,
        failed_by_reason=failed_by,
        errors=rejects.first_errors(FIRST_ERRORS),
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
