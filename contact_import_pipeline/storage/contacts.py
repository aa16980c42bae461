"""Every statement the pipeline runs against the contacts table, but the batch writers.

Each batch is one transaction that also records its outcome per import in
``contact_import_batches``, so the database itself can prove which batches of an import landed,
even after a crash. Contacts created by an import carry ``metadata.import_tag``; merged ones keep
their own metadata, which is what lets ``undo_import`` remove exactly what an import created.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contact_import_pipeline.model import BatchImport, BatchOutcome, ImportProgress, ProgressCallback
from contact_import_pipeline.storage.schema import (
    contact_imports,
    contacts,
    default_database_url,
    import_batches,
    import_plans,
    metadata_obj,
    normalize_url,
)
from contact_import_pipeline.storage.writers import LOOKUP_CHUNK, NotInserted, pg_insert, sqlite_insert

# One text parameter has no such limit; 100k phones keep each lookup query under a second.
PG_LOOKUP_CHUNK = 100_000
_PG_EXISTING = sa.text(
    "SELECT phone_number FROM contacts WHERE workspace_id = :ws "
    "AND phone_number = ANY(string_to_array(:phones, E'\\n'))"
)


class ContactsStore:
    """Reads and writes the contacts table of one database."""

    def __init__(self, url: str | None = None, read_only: bool = False) -> None:
        """``read_only`` (a dry run) creates nothing and takes no lock: on SQLite it opens the file
        read-only, without WAL or the write lock, and never creates it or its folder."""
        self.url = normalize_url(url or default_database_url())
        sa_url = sa.engine.make_url(self.url)
        self.is_postgres = sa_url.get_backend_name() == "postgresql"
        on_disk = sa_url.get_backend_name() == "sqlite" and sa_url.database not in (None, "", ":memory:")
        if read_only and on_disk:
            path = Path(str(sa_url.database)).resolve()
            self.engine = sa.create_engine(
                "sqlite://", creator=lambda: sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=120)
            )
        elif sa_url.get_backend_name() == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            # Several batch processes write at once; wait for the lock instead of failing.
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 120})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin_immediate)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def has_contacts(self) -> bool:
        """Whether the contacts table exists, without creating anything (not even a SQLite file)."""
        sa_url = sa.engine.make_url(self.url)
        on_disk = not self.is_postgres and sa_url.database and sa_url.database != ":memory:"
        if on_disk and not Path(str(sa_url.database)).exists():
            return False
        return sa.inspect(self.engine).has_table(contacts.name)

    def create_schema(self) -> None:
        """Create the tables and the unique index if they are missing."""
        with self.engine.begin() as conn:
            metadata_obj.create_all(conn, checkfirst=True)
            # The reference schema generates ids in the database; SQLite rows get uuid4 from Python.
            # ALTER TABLE takes an ACCESS EXCLUSIVE lock that waits for every open batch of other
            # imports (and stalls everything queued behind it), so it runs only while the default is missing.
            if self.is_postgres and not self._has_id_default(conn):
                conn.execute(sa.text("ALTER TABLE contacts ALTER COLUMN id SET DEFAULT gen_random_uuid()"))

    @staticmethod
    def _has_id_default(conn: sa.Connection) -> bool:
        return conn.execute(
            sa.text(
                "SELECT column_default IS NOT NULL FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'contacts' AND column_name = 'id'"
            )
        ).scalar_one()

    def lock(self, conn: sa.Connection, name: str) -> None:
        """Hold a lock on ``name`` until the transaction ends (PostgreSQL advisory lock).

        SQLite needs nothing: its single writer lock (BEGIN IMMEDIATE) already serializes transactions.
        """
        if self.is_postgres:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": name})

    def existing_phones(
        self, workspace_id: str, phones: Sequence[str], planned: frozenset[str] = frozenset()
    ) -> set[str]:
        """The given phones that already exist in the workspace (never the whole workspace).

        ``planned`` are phones this run's imports planned on an earlier attempt (``recorded_plans``):
        after a crash a re-execution sees the rows its landed batches inserted as existing; if it
        skipped them, the remaining rows would shift into batch indexes already recorded as landed
        and be silently dropped. Phones another import added meanwhile stay in the plan and become
        late conflicts (skipped) inside their batch.
        """
        found: set[str] = set()
        with self.engine.connect() as conn:
            if self.is_postgres:
                # One newline-joined text per chunk, split by the server: binding a Python list as
                # an array costs ~2 µs per phone on the client (1.7 s at a million).
                for start in range(0, len(phones), PG_LOOKUP_CHUNK):
                    joined = _newline_joined(phones[start : start + PG_LOOKUP_CHUNK])
                    found.update(conn.execute(_PG_EXISTING, {"ws": workspace_id, "phones": joined}).scalars())
                return found - planned
            for start in range(0, len(phones), LOOKUP_CHUNK):
                chunk = list(phones[start : start + LOOKUP_CHUNK])  # one chunk of Python strings at a time
                query = sa.select(contacts.c.phone_number).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.phone_number.in_(chunk)
                )
                found.update(conn.execute(query).scalars())
        return found - planned

    def recorded_plans(self, import_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """The phones each import planned on an earlier attempt (none on a first attempt)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(import_plans.c.import_id, import_plans.c.phones).where(
                    import_plans.c.import_id.in_(list(import_ids))
                )
            )
            return {row.import_id: frozenset(row.phones.split("\n")) if row.phones else frozenset() for row in rows}

    def record_plans(self, plans: dict[str, Sequence[str]]) -> None:
        """Record the phones each import plans to insert; the first attempt's record is kept."""
        if not plans:
            return
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(import_plans)
        rows = [{"import_id": import_id, "phones": _newline_joined(phones)} for import_id, phones in plans.items()]
        with self.engine.begin() as conn:
            conn.execute(insert.on_conflict_do_nothing(index_elements=["import_id"]), rows)

    def recorded_batches(self, import_ids: Sequence[str]) -> dict[str, dict[int, BatchOutcome]]:
        """Outcomes of the batches that landed, per import and batch index."""
        out: dict[str, dict[int, BatchOutcome]] = {import_id: {} for import_id in import_ids}
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(import_batches).where(import_batches.c.import_id.in_(list(import_ids))))
            for row in rows:
                out[row.import_id][row.batch_index] = _outcome(row)
        return out

    def insert_batch(
        self,
        *,
        run_key: str,
        batch_index: int,
        imports: Sequence[BatchImport],
        batch: pd.DataFrame,
        update: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, BatchOutcome]:
        """Insert one batch in one transaction; a batch that already landed is not inserted again.

        ``batch`` has the BATCH_COLUMNS (text), ``row`` (the row's line number in its file) and
        ``import`` (its import's position in ``imports``); phones are distinct per workspace.
        Without ``update``, rows whose phone already exists in their workspace are skipped (ON
        CONFLICT DO NOTHING) and their row numbers reported in ``conflict_rows``; with it, those
        contacts are merged and counted as updated. The outcome is recorded per import in the same
        transaction. ``run_key`` (the root run id) names the batch's lock and the progress sums;
        ``on_progress`` runs inside the transaction, after the outcome is written and while the
        run's progress lock is held, so progress readers see sums that only move forward.
        """
        ids = [share.import_id for share in imports]
        with self.engine.begin() as conn:
            self.lock(conn, f"{run_key}#batch{batch_index}")
            previous = conn.execute(
                sa.select(import_batches).where(
                    import_batches.c.import_id.in_(ids), import_batches.c.batch_index == batch_index
                )
            ).all()
            if previous:
                return {row.import_id: _outcome(row) for row in previous}
            insert = pg_insert if self.is_postgres else sqlite_insert
            not_inserted = insert(conn, imports, batch, update)
            outcomes = _outcomes(imports, batch, not_inserted)
            if outcomes:
                conn.execute(
                    import_batches.insert(),
                    [
                        {
                            "import_id": share.import_id,
                            "batch_index": batch_index,
                            "workspace_id": share.workspace_id,
                            "import_tag": share.import_tag,
                            "rows": outcomes[share.import_id].rows,
                            "imported": outcomes[share.import_id].imported,
                            "skipped": outcomes[share.import_id].skipped,
                            "updated": outcomes[share.import_id].updated,
                            "conflict_rows": outcomes[share.import_id].conflict_rows,
                        }
                        for share in imports
                        if share.import_id in outcomes
                    ],
                )
            if on_progress is not None:
                self.lock(conn, f"{run_key}#progress")
                on_progress(self._progress(conn, run_key))
            return outcomes

    @staticmethod
    def _progress(conn: sa.Connection, root_run_id: str) -> ImportProgress:
        b = import_batches.c
        run_imports = sa.select(contact_imports.c.import_id).where(contact_imports.c.root_run_id == root_run_id)
        row = conn.execute(
            sa.select(
                sa.func.count(sa.distinct(b.batch_index)),
                sa.func.coalesce(sa.func.sum(b.imported), 0),
                sa.func.coalesce(sa.func.sum(b.skipped), 0),
                sa.func.coalesce(sa.func.sum(b.updated), 0),
            ).where(b.import_id.in_(run_imports))
        ).one()
        return ImportProgress(batches=row[0], imported=int(row[1]), skipped=int(row[2]), updated=int(row[3]))

    def query_contacts(self, workspace_id: str, import_tag: str | None = None) -> list[dict[str, Any]]:
        """Contacts of one workspace, optionally only those carrying an import tag."""
        query = sa.select(contacts).where(contacts.c.workspace_id == workspace_id)
        if import_tag is not None:
            query = query.where(self.has_tag(import_tag))
        query = query.order_by(contacts.c.created_at, contacts.c.phone_number)
        with self.engine.connect() as conn:
            return [_contact_dict(row._mapping) for row in conn.execute(query)]

    def has_tag(self, import_tag: str) -> sa.ColumnElement[bool]:
        """A condition true for contacts whose tags contain ``import_tag`` (JSONB containment on Postgres)."""
        if self.is_postgres:
            return contacts.c.tags.op("@>")(sa.func.jsonb_build_array(import_tag))
        each = sa.func.json_each(contacts.c.tags).table_valued("value")
        return sa.exists(sa.select(1).select_from(each).where(each.c.value == import_tag))

    def undo_import(self, workspace_id: str, import_tag: str, dry_run: bool = False) -> int:
        """Delete the contacts this import created in the workspace and return how many (one statement).

        Created contacts carry ``metadata.import_tag`` and the tag; contacts that existed before
        the import, or that it only updated, lack the former and are never touched. ``dry_run``
        counts without deleting. Running it again deletes nothing and returns 0.
        """
        created = sa.and_(
            contacts.c.workspace_id == workspace_id,
            contacts.c.metadata["import_tag"].as_string() == import_tag,
            self.has_tag(import_tag),
        )
        with self.engine.begin() as conn:
            if dry_run:
                return conn.execute(sa.select(sa.func.count()).select_from(contacts).where(created)).scalar_one()
            return conn.execute(contacts.delete().where(created)).rowcount

    def count_contacts(self, workspace_id: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(contacts).where(contacts.c.workspace_id == workspace_id)
            ).scalar_one()

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn


def _outcomes(
    imports: Sequence[BatchImport], batch: pd.DataFrame, not_inserted: list[NotInserted]
) -> dict[str, BatchOutcome]:
    """Per import: its rows in the batch, and which were merged or skipped."""
    rows = (
        np.bincount(batch["import"].to_numpy(dtype=np.int64), minlength=len(imports))
        if len(batch)
        else np.zeros(len(imports), dtype=np.int64)
    )
    updated = [0] * len(imports)
    conflicts: list[list[int]] = [[] for _ in imports]
    for position, row, merged in sorted(not_inserted):
        if merged:
            updated[position] += 1
        else:
            conflicts[position].append(int(row))
    return {
        share.import_id: BatchOutcome(
            rows=int(rows[i]),
            imported=int(rows[i]) - updated[i] - len(conflicts[i]),
            skipped=len(conflicts[i]),
            updated=updated[i],
            conflict_rows=conflicts[i],
        )
        for i, share in enumerate(imports)
        if rows[i]
    }


def _newline_joined(phones: Sequence[str]) -> str:
    """The phones as one newline-separated text, built in Arrow: a million Python strings would
    cost ~60 MB at the step's memory peak."""
    array = pa.array(phones, type=pa.large_string())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return ""
    joined = pc.binary_join_element_wise(array, pa.scalar("", array.type), pa.scalar("\n", array.type))
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
    data = joined.buffers()[2].to_pybytes()[offsets[joined.offset] : offsets[joined.offset + len(joined)]]
    return data.decode("utf-8")[:-1]  # every phone got a trailing newline; drop the last one


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let _sqlite_begin_immediate open transactions
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    """Take SQLite's write lock up front so a batch's existence check and insert cannot interleave."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _outcome(row: Any) -> BatchOutcome:
    return BatchOutcome(
        rows=row.rows,
        imported=row.imported,
        skipped=row.skipped,
        updated=row.updated,
        conflict_rows=list(row.conflict_rows or []),
    )


def _contact_dict(mapping: Any) -> dict[str, Any]:
    out = dict(mapping)
    out["id"] = str(out["id"])
    for key in ("created_at", "updated_at"):
        value: Any = out.get(key)
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out
