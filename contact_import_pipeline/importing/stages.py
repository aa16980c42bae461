"""The import's stages as plain functions over the imports of one run.

Data moves forward only. Each stage returns values that carry what the earlier stages learned
(options, row reasons, timings), so every count can be traced to rows and every row to a reason.
A run carries one or more imports (uploaded files); each keeps its own counts and rejects, and the
run's files are deduplicated as if they had been imported one after another in upload order.
The Dagster assets in ``assets.py`` only call these.
"""

from __future__ import annotations

import functools
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from contact_import_pipeline.importing import diagnoses
from contact_import_pipeline.importing.options import ResolvedOptions
from contact_import_pipeline.importing.rejects import RejectTable
from contact_import_pipeline.mapping.columns import ColumnPlan, apply_plan, plan_columns
from contact_import_pipeline.mapping.phones import normalize_phone_column
from contact_import_pipeline.model import (
    BATCH_COLUMNS,
    CONTACT_FIELDS,
    OTHER_PHONES,
    BatchImport,
    BatchOutcome,
    Diagnosis,
    Reject,
)
from contact_import_pipeline.reading.csv_file import CsvTable, text_column
from contact_import_pipeline.settings import FIRST_ERRORS
from contact_import_pipeline.vocabulary import ImportStatus, OnDuplicate, Reason

# Existing phones of a workspace among the given ones: (workspace_id, phones) -> found.
Lookup = Callable[[str, Sequence[str]], set[str]]


@dataclass(frozen=True)
class SettledImport:
    """An import this run does no more work on: it failed as a file, or an earlier attempt completed it."""

    import_id: str
    position: int
    key: str
    workspace_id: str
    status: str
    error: str | None = None
    options: ResolvedOptions | None = None  # known when its options still resolve (for a pending cleanup)


@dataclass
class RawImport:
    """One file of the run, read: its resolved options and the decoded table."""

    import_id: str
    position: int
    options: ResolvedOptions
    source: str  # the name shown to people
    table: CsvTable
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class NormalizedImport:
    """Mapped fields and E.164 phones for the rows of one import that have one."""

    import_id: str
    position: int
    options: ResolvedOptions
    source: str
    header: list[str]
    plan: ColumnPlan
    raw: pd.DataFrame  # the reader's frame, kept so later rejects can carry original values
    raw_rows: np.ndarray  # line number of each row of ``raw`` (ascending)
    # CONTACT_FIELDS + phone_number + other_phones + phone_raw + row, valid phones only
    contacts: pd.DataFrame
    rejects: RejectTable
    total: int
    encoding: str
    delimiter: str
    multi_phone_rows: int  # rows whose phone is the first valid number of a cell listing several
    timings: dict[str, float] = field(default_factory=dict)
    diagnoses: list[Diagnosis] = field(default_factory=list)  # set by the normalizing asset (``diagnoses``)


@dataclass
class DedupedImport:
    """The rows of one import to insert, and every row set aside so far.

    ``contacts`` go in with the run's first batches. ``later`` are rows of an ``update`` import
    whose phone an earlier file of the same run and workspace adds: they merge into that contact
    after it exists, in phase ``phase`` (2 for the second file carrying the phone, and so on).
    """

    import_id: str
    position: int
    options: ResolvedOptions
    source: str
    header: list[str]
    plan: ColumnPlan
    contacts: pd.DataFrame
    later: pd.DataFrame  # same columns + phase
    rejects: RejectTable
    total: int
    encoding: str
    delimiter: str
    multi_phone_rows: int  # as normalized (before duplicates are set aside)
    timings: dict[str, float] = field(default_factory=dict)
    diagnoses: list[Diagnosis] = field(default_factory=list)

    @functools.cached_property
    def skipped_before(self) -> int:
        return sum(self.rejects.counts(skipped=True).values())

    @functools.cached_property
    def failed_before(self) -> int:
        return len(self.rejects) - self.skipped_before

    def batch_import(self) -> BatchImport:
        """What a batch needs to know about this import's rows."""
        metadata = {"import_tag": self.options.import_tag}
        if self.options.board_phone_number:
            metadata["board_phone_number"] = self.options.board_phone_number
        return BatchImport(
            import_id=self.import_id,
            workspace_id=self.options.workspace_id,
            import_tag=self.options.import_tag,
            metadata=metadata,
        )


@dataclass
class RunStage:
    """A stage's value: every import of the run in upload order, and the run's batch size.

    Imports that need no more work travel as ``SettledImport`` so that the run's summary still
    lists them.
    """

    run_key: str  # the root run id: names the run's batches and their locks
    batch_size: int
    imports: list
    dry_run: bool = False  # predict, write nothing

    def working(self) -> list:
        return [item for item in self.imports if not isinstance(item, SettledImport)]

    def with_imports(self, imports: list) -> RunStage:
        return RunStage(self.run_key, self.batch_size, imports, self.dry_run)


@dataclass(frozen=True)
class Batch:
    """One insert batch: a transaction and, in the first phase, a Dagster step.

    The rows travel as a small Arrow-backed frame (BATCH_COLUMNS + other_phones + row + import), not as
    tuples: a million contacts as tuples of str objects would cost gigabytes while planning, and
    the insert streams the frame to the database as CSV without building them. ``import`` is the
    position of the row's import in ``imports``; a batch may hold rows of several imports.
    """

    run_key: str
    index: int
    count: int  # batches of the first phase (live progress "batch k of N")
    update: bool
    imports: tuple[BatchImport, ...]
    frame: pd.DataFrame
    total: int  # data rows in the run's files (live progress)
    skipped_before: int  # rows set aside as duplicates before inserting
    failed_before: int  # rows that failed before inserting


@dataclass(frozen=True)
class BatchResult:
    """What an insert step returns to ``summarize``."""

    index: int
    outcomes: dict[str, BatchOutcome]
    started_at: float  # wall-clock times, so summarize can tell how long the batches took together
    finished_at: float


def insert_wall_seconds(results: Sequence[BatchResult]) -> float:
    """From the first batch's start to the last one's end: batches overlap, so their own
    durations would add up to more than the time they took."""
    if not results:
        return 0.0
    return max(r.finished_at for r in results) - min(r.started_at for r in results)


def _phones(mapped: pd.DataFrame, default_region: str) -> tuple[pd.Series, pd.Series, np.ndarray, int]:
    """Per row: E.164 (Arrow text, '' when none), the other valid phones of its cell (E.164 joined by
    ",", '' when none) and the reason (object array, None when valid); and how many rows kept other
    valid phones of their cell (a cell whose other parts are no phone, such as an extension, counts not)."""
    e164, why, others = normalize_phone_column(mapped["phone_raw"], mapped["country_raw"], default_region)
    phones = text_column([pc.fill_null(chunk, "") for chunk in e164])
    phones.index = mapped.index
    other = pd.Series("", index=mapped.index, dtype="str")
    other.iloc[list(others)] = [",".join(numbers) for numbers in others.values()]
    return phones, other, why, sum(1 for numbers in others.values() if numbers)


def normalize(raw: RawImport) -> NormalizedImport:
    """Map headers to contact fields and phones to E.164; rows without a valid phone fail."""
    started = time.perf_counter()
    options, table = raw.options, raw.table
    plan = plan_columns(table.header, options.column_mapping, raw.source)
    mapped = apply_plan(table.frame, plan)
    mapped["phone_number"], mapped[OTHER_PHONES], reasons, multi_phone_rows = _phones(mapped, options.default_region)
    mapped["row"] = table.rows
    rejects = [RejectTable.from_rejects(table.rejects)]
    for reason in (Reason.MISSING_PHONE, Reason.INVALID_PHONE):
        positions = np.flatnonzero(reasons == reason)
        detail = (
            "no phone number"
            if reason == Reason.MISSING_PHONE
            else "not a valid phone number: '" + mapped["phone_raw"].iloc[positions].reset_index(drop=True) + "'"
        )
        rejects.append(RejectTable.from_raw(table.frame, positions, table.rows[positions], reason, detail))
    good = pd.isna(reasons) | (reasons == None)  # noqa: E711 - elementwise test of an object array
    contacts = mapped.loc[good, [*CONTACT_FIELDS, "phone_number", OTHER_PHONES, "phone_raw", "row"]]
    contacts = contacts.reset_index(drop=True)
    return NormalizedImport(
        import_id=raw.import_id,
        position=raw.position,
        options=options,
        source=raw.source,
        header=table.header,
        plan=plan,
        raw=table.frame,
        raw_rows=table.rows,
        contacts=contacts,
        rejects=RejectTable.concat(rejects),
        total=len(table.frame) + len(table.rejects),
        encoding=table.encoding,
        delimiter=table.delimiter,
        multi_phone_rows=multi_phone_rows,
        timings=dict(raw.timings, phones=time.perf_counter() - started),
    )


def _first_copies(phones: pd.Series, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of later copies of a phone within the file, line number of each row's first copy)."""
    # Codes instead of hashing Python strings: Arrow's dictionary encoding keeps this in C.
    codes, _ = pd.factorize(phones)
    _, first_position = np.unique(codes, return_index=True)
    later = np.ones(len(phones), dtype=bool)
    later[first_position] = False
    return later, rows[first_position][codes] if len(codes) else rows


def dedupe(imports: Sequence[NormalizedImport], lookup: Lookup) -> list[DedupedImport]:
    """Skip later copies of a phone within a file, then phones the workspace already has, in upload order.

    A phone that an earlier file of the run adds to the same workspace counts as existing for the
    later file, exactly as if the files had run one after another. Only the run's own phones are
    looked up (one lookup per workspace), so the cost follows the files, not the workspace.
    With ``on_duplicate="update"`` existing phones stay in the batches, where the insert merges
    them; a phone an earlier file of the run adds is merged after that file's batches.
    """
    started = time.perf_counter()
    ordered = sorted(imports, key=lambda i: i.position)
    firsts = {i.import_id: _first_copies(i.contacts["phone_number"], i.contacts["row"].to_numpy()) for i in ordered}
    candidates: dict[str, list[pd.Series]] = defaultdict(list)
    for item in ordered:
        if item.options.on_duplicate == OnDuplicate.SKIP:
            later, _ = firsts[item.import_id]
            candidates[item.options.workspace_id].append(item.contacts["phone_number"][~later])
    existing = {
        workspace_id: lookup(
            workspace_id, pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
        )
        for workspace_id, parts in candidates.items()
    }
    sharing = {ws for ws, n in Counter(i.options.workspace_id for i in ordered).items() if n > 1}
    added_in_run: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)  # ws -> phone -> (times, first file)
    out = []
    for item in ordered:
        out.append(
            _dedupe_one(
                item,
                firsts[item.import_id],
                existing.get(item.options.workspace_id, set()),
                added_in_run,
                item.options.workspace_id in sharing,
            )
        )
    seconds = (time.perf_counter() - started) / max(1, len(out))
    for deduped in out:
        deduped.timings["dedup"] = seconds
    return out


def _dedupe_one(
    item: NormalizedImport,
    first: tuple[np.ndarray, np.ndarray],
    existing: set[str],
    added_in_run: dict[str, dict[str, tuple[int, str]]],
    shares_workspace: bool,
) -> DedupedImport:
    contacts = item.contacts
    workspace_id = item.options.workspace_id
    update = item.options.on_duplicate == OnDuplicate.UPDATE
    phones = contacts["phone_number"]
    rows = contacts["row"].to_numpy()
    in_file, first_row = first
    earlier = added_in_run[workspace_id]
    in_run = (phones.isin(earlier.keys()).to_numpy() & ~in_file) if earlier else np.zeros(len(contacts), dtype=bool)
    is_existing = (
        (phones.isin(existing).to_numpy() & ~in_file & ~in_run) if existing else np.zeros(len(contacts), dtype=bool)
    )
    rejects = [item.rejects]
    if in_file.any():
        detail = (
            "same phone "
            + phones[in_file].reset_index(drop=True)
            + " as row "
            + pd.Series(first_row[in_file]).astype("str")
        )
        rejects.append(_raw_rejects(item, rows[in_file], Reason.DUPLICATE_IN_FILE, detail))
    if is_existing.any():
        dups = contacts.loc[is_existing, ["phone_number", "row"]].reset_index(drop=True)
        detail = dups["phone_number"] + f" already exists in workspace {workspace_id}"
        rejects.append(_raw_rejects(item, dups["row"].to_numpy(), Reason.DUPLICATE_EXISTING, detail))
    later = contacts.loc[in_run].reset_index(drop=True) if update else contacts.iloc[0:0].copy()
    later["phase"] = np.array([earlier[p][0] + 1 for p in later["phone_number"]], dtype=np.int64)
    if in_run.any() and not update:
        dups = contacts.loc[in_run, ["phone_number", "row"]].reset_index(drop=True)
        detail = pd.Series(
            [
                f"{p} already exists in workspace {workspace_id} (added by {earlier[p][1]} earlier in this run)"
                for p in dups["phone_number"]
            ],
            dtype="str",
        )
        rejects.append(_raw_rejects(item, dups["row"].to_numpy(), Reason.DUPLICATE_EXISTING, detail))
    keep = ~(in_file | is_existing | in_run)
    planned = contacts.loc[keep].reset_index(drop=True)
    if shares_workspace:  # only a later file of the same workspace can meet these phones again
        for phone in planned["phone_number"]:
            earlier[phone] = (1, item.options.key)
        for phone, phase in zip(later["phone_number"], later["phase"], strict=True):
            earlier[phone] = (int(phase), earlier[phone][1])
    return DedupedImport(
        import_id=item.import_id,
        position=item.position,
        options=item.options,
        source=item.source,
        header=item.header,
        plan=item.plan,
        contacts=planned,
        later=later,
        rejects=RejectTable.concat(rejects),
        total=item.total,
        encoding=item.encoding,
        delimiter=item.delimiter,
        multi_phone_rows=item.multi_phone_rows,
        timings=dict(item.timings),
        diagnoses=list(item.diagnoses),
    )


def _raw_rejects(item: NormalizedImport, rows: np.ndarray, reason: str, detail: pd.Series) -> RejectTable:
    positions = np.searchsorted(item.raw_rows, rows)
    return RejectTable.from_raw(item.raw, positions, rows, reason, detail)


# --- batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Lane:
    """Rows inserted together, in upload order: first-phase skips, first-phase updates, then each later phase."""

    phase: int
    update: bool
    parts: list[tuple[int, pd.DataFrame]]  # (index into the run's deduped imports, rows)

    @property
    def rows(self) -> int:
        return sum(len(frame) for _, frame in self.parts)


def _lanes(deduped: Sequence[DedupedImport]) -> list[_Lane]:
    lanes = [
        _Lane(
            1,
            False,
            [
                (i, d.contacts)
                for i, d in enumerate(deduped)
                if d.options.on_duplicate == OnDuplicate.SKIP and len(d.contacts)
            ],
        ),
        _Lane(
            1,
            True,
            [
                (i, d.contacts)
                for i, d in enumerate(deduped)
                if d.options.on_duplicate == OnDuplicate.UPDATE and len(d.contacts)
            ],
        ),
    ]
    phases = sorted({int(p) for d in deduped for p in d.later["phase"].unique()})
    for phase in phases:
        parts = [(i, d.later[d.later["phase"] == phase]) for i, d in enumerate(deduped)]
        lanes.append(_Lane(phase, True, [(i, frame) for i, frame in parts if len(frame)]))
    return [lane for lane in lanes if lane.rows]


def _chunks(lane: _Lane, size: int) -> Iterator[list[tuple[int, int, int]]]:
    """(import index, start, stop) pieces of each batch of ``size`` rows, walking the lane in order."""
    pieces: list[tuple[int, int, int]] = []
    room = size
    for index, frame in lane.parts:
        start = 0
        while start < len(frame):
            stop = min(len(frame), start + room)
            pieces.append((index, start, stop))
            room -= stop - start
            start = stop
            if room == 0:
                yield pieces
                pieces, room = [], size
    if pieces:
        yield pieces


def batch_membership(deduped: Sequence[DedupedImport], batch_size: int) -> tuple[int, dict[str, list[int]]]:
    """(first-phase batch count, the batch indexes holding rows of each import), from row counts only."""
    members: dict[str, list[int]] = {d.import_id: [] for d in deduped}
    index = 0
    first_phase = 0
    for lane in _lanes(deduped):
        for pieces in _chunks(lane, batch_size):
            for position in sorted({i for i, _, _ in pieces}):
                members[deduped[position].import_id].append(index)
            index += 1
            first_phase += lane.phase == 1
    return max(1, first_phase), members


def plan_batches(deduped: Sequence[DedupedImport], batch_size: int, run_key: str) -> list[Batch]:
    """Split the rows to insert into the first phase's batches, which run as Dagster steps, several at once.

    A run with nothing to insert still plans one empty batch, so the run's shape is the same for
    every set of files. The same imports give the same batches on every attempt.
    """
    first = _batches(deduped, batch_size, run_key, later=False)
    if not first:
        total, skipped, failed = _progress_base(deduped)
        empty = pd.DataFrame({c: pd.Series([], dtype="str") for c in (*BATCH_COLUMNS, OTHER_PHONES)}).assign(
            row=pd.Series([], dtype="int64"), **{"import": pd.Series([], dtype="int64")}
        )
        first.append(Batch(run_key, 0, 1, False, (), empty, total, skipped, failed))
    return first


def later_batches(deduped: Sequence[DedupedImport], batch_size: int, run_key: str) -> list[Batch]:
    """The batches of the later phases, in order: updates of phones an earlier file of the run adds.

    They run after the first phase, one by one. Batches are numbered across phases.
    """
    return _batches(deduped, batch_size, run_key, later=True)


def _progress_base(deduped: Sequence[DedupedImport]) -> tuple[int, int, int]:
    """(rows in the run's files, rows set aside as duplicates, rows failed) before inserting."""
    return (
        sum(d.total for d in deduped),
        sum(d.skipped_before for d in deduped),
        sum(d.failed_before for d in deduped),
    )


def _batches(deduped: Sequence[DedupedImport], batch_size: int, run_key: str, later: bool) -> list[Batch]:
    count, _ = batch_membership(deduped, batch_size)
    total, skipped_before, failed_before = _progress_base(deduped)
    shares = [d.batch_import() for d in deduped]
    out: list[Batch] = []
    index = 0
    for lane in _lanes(deduped):
        frames = dict(lane.parts)
        for pieces in _chunks(lane, batch_size):
            if (lane.phase > 1) == later:
                members = sorted({i for i, _, _ in pieces})
                local = {position: n for n, position in enumerate(members)}
                frame = pd.concat(
                    [
                        frames[i].iloc[start:stop][[*BATCH_COLUMNS, OTHER_PHONES, "row"]].assign(**{"import": local[i]})
                        for i, start, stop in pieces
                    ],
                    ignore_index=True,
                )
                out.append(
                    Batch(
                        run_key,
                        index,
                        count,
                        lane.update,
                        tuple(shares[i] for i in members),
                        frame,
                        total,
                        skipped_before,
                        failed_before,
                    )
                )
            index += 1
    return out


# --- summaries ----------------------------------------------------------------------------------


@dataclass
class Summary:
    """The final counts of one import, in the reference design's terms plus reasons."""

    import_id: str
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
    mapping: dict[str, object] = field(default_factory=dict)  # how the headers were understood
    diagnoses: list[Diagnosis] = field(default_factory=list)
    multi_phone_rows: int = 0  # rows whose phone cell listed several numbers (the others in metadata.other_phones)

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
        """Everything but the rejected rows themselves."""
        return {
            "status": str(self.status),
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
            "mapping": self.mapping,
            "diagnoses": [d.as_dict() for d in self.diagnoses],
            "multi_phone_rows": self.multi_phone_rows,
        }


class AccountingError(RuntimeError):
    """The counts do not add up, or a planned batch has no recorded outcome: never report success."""


def summarize(
    deduped: DedupedImport, planned: Sequence[int], outcomes: dict[int, BatchOutcome], insert_seconds: float
) -> Summary:
    """Total one import's recorded batch outcomes and the rows it set aside; fail if anything is missing.

    ``planned`` are the batches holding its rows; ``outcomes`` come from the database, not from
    Dagster, because a re-execution can skip steps that never ran and still report success.
    """
    missing = sorted(set(planned) - set(outcomes))
    if missing:
        shown = ", ".join(str(i) for i in missing[:20])
        raise AccountingError(
            f"{deduped.options.key}: {len(missing)} of {len(planned)} planned batches have no recorded outcome "
            f"(batch {shown}); re-execute the run with ALL_STEPS (inserts are idempotent)"
        )
    late: list[Reject] = []
    conflict_rows = [row for index in sorted(outcomes) for row in outcomes[index].conflict_rows]
    if conflict_rows:
        by_row = pd.concat([deduped.contacts, deduped.later.drop(columns="phase")], ignore_index=True).set_index("row")
        for row in conflict_rows:
            record = by_row.loc[row]
            late.append(
                Reject(
                    row=int(row),
                    reason=Reason.DUPLICATE_EXISTING,
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
            f"counts do not add up for {deduped.options.key}: imported {imported} + updated {updated} + skipped "
            f"{skipped} + failed {failed} != total {deduped.total}"
        )
    return Summary(
        import_id=deduped.import_id,
        status=ImportStatus.COMPLETED,
        workspace_id=deduped.options.workspace_id,
        import_tag=deduped.options.import_tag,
        file=deduped.options.key,
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
        mapping=diagnoses.column_mapping(deduped.header, deduped.plan, deduped.options.column_mapping),
        diagnoses=[
            *deduped.diagnoses,
            *diagnoses.of_outcome(deduped.total, skipped_by, failed_by, deduped.options.workspace_id),
        ],
        multi_phone_rows=deduped.multi_phone_rows,
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
