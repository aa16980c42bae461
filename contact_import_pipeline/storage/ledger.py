"""The per-import ledger (``contact_imports``): what became of each uploaded file, in the contacts database.

An import is the user's unit, whichever run carried it. The run claims its imports (one row each,
with the import tag settled once), records the counts planned before inserting, and records the
outcome; a crash leaves the row ``interrupted`` for the failure sensor to explain. History, undo
and ``contact-import status`` read it here rather than from Dagster's run storage, so they answer
per file even when a run carried hundreds of files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import contact_imports, import_batches, import_plans
from contact_import_pipeline.vocabulary import ImportStatus, default_import_tag

# Default tags of one workspace are looked up in this window after the earliest new one; a chain
# of same-second uploads longer than this would be needed to reach past it.
_TAG_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class ImportClaim:
    """An import a run is about to work on."""

    import_id: str
    position: int
    key: str
    version: str
    workspace_id: str
    source: str
    import_tag: str  # "" leaves the default tag to the ledger
    tag_time: datetime
    origin: str
    user_id: str | None = None


@dataclass(frozen=True)
class PlannedImport:
    """Counts known once an import's rows are planned, before any batch runs."""

    import_id: str
    total: int
    skipped: int
    failed: int
    planned_batches: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportResult:
    """The final outcome of an import that completed."""

    import_id: str
    total: int
    imported: int
    updated: int
    skipped: int
    failed: int
    skipped_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    errors: list[dict[str, Any]]
    rejects_file: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class LedgerEntry:
    """One import as the ledger knows it; counts of a running import include the batches landed so far."""

    import_id: str
    root_run_id: str
    run_id: str
    position: int
    workspace_id: str
    file: str
    version: str
    source: str
    import_tag: str
    origin: str
    user_id: str | None
    status: str
    error: str | None
    total: int
    imported: int
    updated: int
    skipped: int
    failed: int
    batches_done: int
    planned_batches: int
    skipped_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    errors: list[dict[str, Any]]
    rejects_file: str | None
    cleanup: str | None
    details: dict[str, Any]
    started_at: str | None
    ended_at: str | None
    undone_at: str | None
    undone_count: int | None

    @property
    def processed(self) -> int:
        return self.imported + self.updated + self.skipped + self.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"processed": self.processed}


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; everything here is stored in UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


class Ledger:
    """Reads and writes ``contact_imports`` in the contacts database of ``store``."""

    def __init__(self, store: ContactsStore) -> None:
        self.store = store
        self.engine = store.engine

    # --- a run's life -----------------------------------------------------------------------

    def claim(self, claims: Sequence[ImportClaim], run_id: str, root_run_id: str) -> dict[str, LedgerEntry]:
        """Record the run's imports and settle their tags; return every import's entry.

        A re-execution finds its imports already claimed: they keep their tag (so every row of an
        import carries one tag) and, unless final, become ``running`` again under the new run.
        A default tag is ``import:<file time>Z``; when another import of the workspace already has
        that second, the next free second is taken, in upload order, under a per-workspace lock.
        """
        ids = [c.import_id for c in claims]
        with self.engine.begin() as conn:
            known = {
                row.import_id: row
                for row in conn.execute(sa.select(contact_imports).where(contact_imports.c.import_id.in_(ids)))
            }
            new = [c for c in claims if c.import_id not in known]
            tags = self._settle_default_tags(conn, [c for c in new if not c.import_tag])
            now = _now()
            if new:
                conn.execute(
                    contact_imports.insert(),
                    [
                        {
                            "import_id": c.import_id,
                            "root_run_id": root_run_id,
                            "run_id": run_id,
                            "position": c.position,
                            "workspace_id": c.workspace_id,
                            "file_key": c.key,
                            "file_version": c.version,
                            "source": c.source,
                            "import_tag": c.import_tag or tags[c.import_id],
                            "origin": c.origin,
                            "user_id": c.user_id,
                            "status": ImportStatus.RUNNING,
                            "started_at": now,
                        }
                        for c in new
                    ],
                )
            resumed = [i for i, row in known.items() if not ImportStatus(row.status).final]
            if resumed:
                conn.execute(
                    contact_imports.update()
                    .where(contact_imports.c.import_id.in_(resumed))
                    .values(run_id=run_id, status=ImportStatus.RUNNING, error=None, ended_at=None)
                )
        return {entry.import_id: entry for entry in self.entries(import_ids=ids)}

    def _settle_default_tags(self, conn: sa.Connection, claims: Sequence[ImportClaim]) -> dict[str, str]:
        by_workspace: dict[str, list[ImportClaim]] = defaultdict(list)
        for claim in claims:
            by_workspace[claim.workspace_id].append(claim)
        tags: dict[str, str] = {}
        for workspace_id in sorted(by_workspace):  # one lock order for every run: no deadlock
            group = sorted(by_workspace[workspace_id], key=lambda c: (c.tag_time, c.position))
            self.store.lock(conn, f"contact_imports:tags:{workspace_id}")
            low = group[0].tag_time.replace(microsecond=0)
            high = group[-1].tag_time + timedelta(seconds=len(group)) + _TAG_WINDOW
            used = set(
                conn.execute(
                    sa.select(contact_imports.c.import_tag).where(
                        contact_imports.c.workspace_id == workspace_id,
                        contact_imports.c.import_tag >= default_import_tag(low),
                        contact_imports.c.import_tag <= default_import_tag(high),
                    )
                ).scalars()
            )
            for claim in group:
                moment = claim.tag_time.replace(microsecond=0)
                while default_import_tag(moment) in used:
                    moment += timedelta(seconds=1)
                tags[claim.import_id] = default_import_tag(moment)
                used.add(tags[claim.import_id])
        return tags

    def fail(self, import_id: str, error: str, details: dict[str, Any] | None = None) -> None:
        """An import failed as a whole (a file-level error): final, with its reason."""
        values: dict[str, Any] = {"status": ImportStatus.FAILED, "error": error, "ended_at": _now()}
        if details:
            values["details"] = details
        with self.engine.begin() as conn:
            conn.execute(contact_imports.update().where(contact_imports.c.import_id == import_id).values(**values))

    def planned(self, imports: Iterable[PlannedImport]) -> None:
        """Record each import's total and the rows set aside before inserting (live progress base)."""
        rows = [
            {
                "b_id": p.import_id,
                "total": p.total,
                "skipped": p.skipped,
                "failed": p.failed,
                "planned_batches": p.planned_batches,
                "details": p.details,
            }
            for p in imports
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(contact_imports.update().where(contact_imports.c.import_id == sa.bindparam("b_id")), rows)

    def cleaned_up(self, outcomes: dict[str, str]) -> None:
        """Record what became of each completed import's source (archived, deleted, kept)."""
        rows = [{"b_id": import_id, "cleanup": outcome} for import_id, outcome in outcomes.items()]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(contact_imports.update().where(contact_imports.c.import_id == sa.bindparam("b_id")), rows)

    def complete(self, results: Iterable[ImportResult]) -> None:
        """Record the final counts of completed imports and drop their recorded plans (one
        transaction: a run's imports complete together, so a re-execution of a run that failed
        plans every one of them again, and its batches keep their numbers)."""
        rows = [
            {
                "b_id": r.import_id,
                "status": ImportStatus.COMPLETED,
                "error": None,
                "total": r.total,
                "imported": r.imported,
                "updated": r.updated,
                "skipped": r.skipped,
                "failed": r.failed,
                "skipped_by_reason": r.skipped_by_reason,
                "failed_by_reason": r.failed_by_reason,
                "errors": r.errors,
                "rejects_file": r.rejects_file,
                "details": r.details,
                "ended_at": _now(),
            }
            for r in results
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(contact_imports.update().where(contact_imports.c.import_id == sa.bindparam("b_id")), rows)
            # A completed import is never planned again (a re-execution reports its ledger row).
            conn.execute(import_plans.delete().where(import_plans.c.import_id.in_([r["b_id"] for r in rows])))

    def interrupt_run(self, root_run_id: str, reason: str) -> list[str]:
        """Mark the run's unfinished imports ``interrupted`` with ``reason``; returns their file keys."""
        with self.engine.begin() as conn:
            unfinished = conn.execute(
                sa.select(contact_imports.c.import_id, contact_imports.c.file_key)
                .where(
                    contact_imports.c.root_run_id == root_run_id,
                    contact_imports.c.status.in_([ImportStatus.RUNNING, ImportStatus.INTERRUPTED]),
                )
                .order_by(contact_imports.c.position)
            ).all()
            if unfinished:
                conn.execute(
                    contact_imports.update()
                    .where(contact_imports.c.import_id.in_([row.import_id for row in unfinished]))
                    .values(status=ImportStatus.INTERRUPTED, error=reason, ended_at=_now())
                )
        return [row.file_key for row in unfinished]

    # --- reading ------------------------------------------------------------------------------

    def entries(
        self,
        *,
        import_ids: Sequence[str] | None = None,
        root_run_id: str | None = None,
        workspace_id: str | None = None,
        import_tag: str | None = None,
    ) -> list[LedgerEntry]:
        """Entries matching every given filter, newest first (then in upload order)."""
        query = sa.select(contact_imports)
        if import_ids is not None:
            query = query.where(contact_imports.c.import_id.in_(list(import_ids)))
        if root_run_id is not None:
            query = query.where(contact_imports.c.root_run_id == root_run_id)
        if workspace_id is not None:
            query = query.where(contact_imports.c.workspace_id == workspace_id)
        if import_tag is not None:
            query = query.where(contact_imports.c.import_tag == import_tag)
        query = query.order_by(
            contact_imports.c.started_at.desc(), contact_imports.c.root_run_id, contact_imports.c.position
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query))
            landed = self._landed(conn, [row.import_id for row in rows if row.status != ImportStatus.COMPLETED])
        return [_entry(row, landed.get(row.import_id)) for row in rows]

    @staticmethod
    def _landed(conn: sa.Connection, import_ids: list[str]) -> dict[str, tuple[int, int, int, int]]:
        """(batches, imported, updated, skipped) recorded so far per import still in progress."""
        if not import_ids:
            return {}
        b = import_batches.c
        query = (
            sa.select(
                b.import_id, sa.func.count(), sa.func.sum(b.imported), sa.func.sum(b.updated), sa.func.sum(b.skipped)
            )
            .where(b.import_id.in_(import_ids))
            .group_by(b.import_id)
        )
        return {
            row[0]: (int(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0)) for row in conn.execute(query)
        }

    def record_undo(self, workspace_id: str, import_tag: str, deleted: int) -> int:
        """Stamp the undo on every import of the tag; a repeated undo that deleted nothing keeps the first stamp."""
        with self.engine.begin() as conn:
            where = sa.and_(contact_imports.c.workspace_id == workspace_id, contact_imports.c.import_tag == import_tag)
            if deleted == 0:
                where = sa.and_(where, contact_imports.c.undone_at.is_(None))
            return conn.execute(
                contact_imports.update().where(where).values(undone_at=_now(), undone_count=deleted)
            ).rowcount


def _entry(row: Any, landed: tuple[int, int, int, int] | None) -> LedgerEntry:
    imported, updated, skipped, batches_done = row.imported, row.updated, row.skipped, row.planned_batches
    if row.status != ImportStatus.COMPLETED:
        batches_done, imported, updated, landed_skipped = landed or (0, 0, 0, 0)
        skipped = row.skipped + landed_skipped
    return LedgerEntry(
        import_id=row.import_id,
        root_run_id=row.root_run_id,
        run_id=row.run_id,
        position=row.position,
        workspace_id=row.workspace_id,
        file=row.file_key,
        version=row.file_version,
        source=row.source,
        import_tag=row.import_tag,
        origin=row.origin,
        user_id=row.user_id,
        status=row.status,
        error=row.error,
        total=row.total,
        imported=imported,
        updated=updated,
        skipped=skipped,
        failed=row.failed,
        batches_done=batches_done,
        planned_batches=row.planned_batches,
        skipped_by_reason=dict(row.skipped_by_reason or {}),
        failed_by_reason=dict(row.failed_by_reason or {}),
        errors=list(row.errors or []),
        rejects_file=row.rejects_file,
        cleanup=row.cleanup,
        details=dict(row.details or {}),
        started_at=_iso(row.started_at),
        ended_at=_iso(row.ended_at),
        undone_at=_iso(row.undone_at),
        undone_count=row.undone_count,
    )
