"""The contacts table and every statement the pipeline runs against it (SQLAlchemy Core).

Both dialects share the table definition. PostgreSQL gets a fast path for inserts (COPY straight
into contacts, or when a phone collides, COPY into a temporary stage and one ordered
``INSERT … SELECT … ON CONFLICT``); SQLite uses ``executemany``.
Each batch is one transaction that also records the batch's outcome in ``contact_import_batches``,
so the database itself can prove which batches of an import landed, even after a crash.

With ``on_duplicate="update"`` an existing contact is merged instead of skipped: its empty fields
are filled from the row, a non-empty value is never overwritten, and the import tag is appended.
Contacts created by an import carry ``metadata.import_tag``; merged ones keep their own metadata,
which is what lets ``undo_import`` remove exactly what an import created.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from contact_import_pipeline.columns import CONTACT_FIELDS

DATABASE_URL_ENV = "CONTACTS_DATABASE_URL"
DEFAULT_DATABASE_PATH = Path(".contact_import") / "contacts.db"

# Columns a batch row carries, in this order: the contact fields, then the E.164 phone.
BATCH_COLUMNS: tuple[str, ...] = (*CONTACT_FIELDS, "phone_number")
ON_DUPLICATE_SKIP, ON_DUPLICATE_UPDATE = "skip", "update"

# PostgreSQL accepts 65,535 bind parameters per statement and SQLite 32,766; lookups stay below both.
LOOKUP_CHUNK = 10_000
# One text parameter has no such limit; 100k phones keep each lookup query under a second.
PG_LOOKUP_CHUNK = 100_000
_PG_EXISTING = sa.text(
    "SELECT phone_number FROM contacts WHERE workspace_id = :ws "
    "AND phone_number = ANY(string_to_array(:phones, E'\\n'))"
)

metadata_obj = sa.MetaData()
_json = postgresql.JSONB().with_variant(sa.JSON(), "sqlite")

contacts = sa.Table(
    "contacts",
    metadata_obj,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("workspace_id", sa.Text(), nullable=False),
    sa.Column("phone_number", sa.Text()),
    sa.Column("firstname", sa.String(), nullable=False),
    sa.Column("lastname", sa.String(), nullable=False),
    sa.Column("email", sa.Text()),
    sa.Column("lead_source", sa.String()),
    sa.Column("market", sa.String()),
    sa.Column("product", sa.String()),
    sa.Column("lead_status", sa.String()),
    sa.Column("st_address", sa.String()),
    sa.Column("city", sa.String()),
    sa.Column("state", sa.String()),
    sa.Column("zip", sa.String()),
    sa.Column("conversation_status", sa.Text(), server_default=sa.text("'New'")),
    sa.Column("tags", _json, server_default=sa.text("'[]'")),
    sa.Column("metadata", _json, server_default=sa.text("'{}'")),
    sa.Column("opt_in_through", sa.String(), server_default=sa.text("'manual'")),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
sa.Index("contacts_workspace_phone_key", contacts.c.workspace_id, contacts.c.phone_number, unique=True)

# One row per landed batch, written in the batch's own transaction.
import_batches = sa.Table(
    "contact_import_batches",
    metadata_obj,
    sa.Column("import_id", sa.Text(), primary_key=True),
    sa.Column("batch_index", sa.Integer(), primary_key=True),
    sa.Column("workspace_id", sa.Text(), nullable=False),
    sa.Column("import_tag", sa.Text(), nullable=False),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("imported", sa.Integer(), nullable=False),
    sa.Column("skipped", sa.Integer(), nullable=False),
    sa.Column("updated", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("conflict_rows", sa.JSON(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

# The phones an import planned to insert, recorded once before its first batch. A re-execution
# plans exactly these again (see ContactsStore.resume_plan), so batch i means the same rows in
# every attempt and a batch recorded as landed never hides rows that did not land.
import_plans = sa.Table(
    "contact_import_plans",
    metadata_obj,
    sa.Column("import_id", sa.Text(), primary_key=True),
    sa.Column("phones", sa.Text(), nullable=False),  # newline-separated E.164 phones
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)


def default_database_url() -> str:
    """``CONTACTS_DATABASE_URL`` or the local SQLite file under ``.contact_import/``."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{DEFAULT_DATABASE_PATH}"


def normalize_url(url: str) -> str:
    """Make plain ``postgres(ql)://`` URLs use psycopg 3 explicitly."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for messages and metadata."""
    return sa.engine.make_url(normalize_url(url)).render_as_string(hide_password=True)


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did: rows inserted, rows already present (skipped), rows updated."""

    rows: int
    imported: int
    skipped: int
    updated: int
    conflict_rows: list[int]


@dataclass(frozen=True)
class ImportProgress:
    """Sums over the batches of one import recorded so far."""

    batches: int
    imported: int
    skipped: int
    updated: int


ProgressCallback = Callable[[ImportProgress], None]


class ContactsStore:
    """Reads and writes the contacts table of one database."""

    def __init__(self, url: str | None = None) -> None:
        self.url = normalize_url(url or default_database_url())
        sa_url = sa.engine.make_url(self.url)
        self.is_postgres = sa_url.get_backend_name() == "postgresql"
        if sa_url.get_backend_name() == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            # Several batch processes write at once; wait for the lock instead of failing.
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 120})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
            sa.event.listen(self.engine, "begin", _sqlite_begin_immediate)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        self._planned_phones: frozenset[str] = frozenset()

    def dispose(self) -> None:
        self.engine.dispose()

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

    def existing_phones(self, workspace_id: str, phones: Sequence[str]) -> set[str]:
        """The given phones that already exist in the workspace (never the whole workspace).

        Phones this import planned on an earlier attempt (``resume_plan``) are not reported.
        """
        found: set[str] = set()
        with self.engine.connect() as conn:
            if self.is_postgres:
                # One newline-joined text per chunk, split by the server: binding a Python list as
                # an array costs ~2 µs per phone on the client (1.7 s at a million).
                for start in range(0, len(phones), PG_LOOKUP_CHUNK):
                    joined = _newline_joined(phones[start : start + PG_LOOKUP_CHUNK])
                    found.update(conn.execute(_PG_EXISTING, {"ws": workspace_id, "phones": joined}).scalars())
                return found - self._planned_phones
            for start in range(0, len(phones), LOOKUP_CHUNK):
                chunk = list(phones[start : start + LOOKUP_CHUNK])  # one chunk of Python strings at a time
                query = sa.select(contacts.c.phone_number).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.phone_number.in_(chunk)
                )
                found.update(conn.execute(query).scalars())
        return found - self._planned_phones

    def resume_plan(self, import_id: str) -> None:
        """Make ``existing_phones`` ignore the phones an earlier attempt of this import planned.

        After a crash, a re-execution sees the rows its landed batches inserted as "existing"; if it
        skipped them, the remaining rows would shift into batch indexes already recorded as landed
        and be silently dropped. Phones another import added meanwhile still stay in the plan and
        become late conflicts (skipped) inside their batch.
        """
        with self.engine.connect() as conn:
            phones = conn.execute(sa.select(import_plans.c.phones).where(import_plans.c.import_id == import_id)).scalar()
        self._planned_phones = frozenset(phones.split("\n")) if phones else frozenset()

    def record_plan(self, import_id: str, phones: Sequence[str]) -> None:
        """Record the phones an import plans to insert; the first attempt's record is kept."""
        insert = (postgresql.insert if self.is_postgres else sqlite.insert)(import_plans)
        with self.engine.begin() as conn:
            conn.execute(
                insert.values(import_id=import_id, phones=_newline_joined(phones)).on_conflict_do_nothing(
                    index_elements=["import_id"]
                )
            )

    def recorded_batches(self, import_id: str) -> dict[int, BatchOutcome]:
        """Outcomes of the batches of an import that landed, by batch index."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(import_batches).where(import_batches.c.import_id == import_id))
            return {row.batch_index: _outcome(row) for row in rows}

    def insert_batch(
        self,
        *,
        import_id: str,
        batch_index: int,
        workspace_id: str,
        import_tag: str,
        board_phone_number: str | None,
        batch: pd.DataFrame,
        on_progress: ProgressCallback | None = None,
        on_duplicate: str = ON_DUPLICATE_SKIP,
    ) -> BatchOutcome:
        """Insert one batch in one transaction; a batch that already landed is not inserted again.

        ``batch`` has the BATCH_COLUMNS (text) and ``row``, the row's line number in the file, and
        distinct phones. With ``on_duplicate="skip"`` rows whose phone already
        exists in the workspace are skipped (ON CONFLICT DO NOTHING) and their row numbers reported
        in ``conflict_rows``; with ``"update"`` those contacts are merged and counted as updated.
        ``on_progress`` runs inside the transaction, after the outcome is written and while this
        import's progress lock is held, so progress readers see sums that only move forward.
        """
        meta = {"import_tag": import_tag}
        if board_phone_number:
            meta["board_phone_number"] = board_phone_number
        with self.engine.begin() as conn:
            self._lock_import(conn, import_id, batch_index)
            previous = conn.execute(
                sa.select(import_batches).where(
                    import_batches.c.import_id == import_id, import_batches.c.batch_index == batch_index
                )
            ).first()
            if previous is not None:
                return _outcome(previous)
            update = on_duplicate == ON_DUPLICATE_UPDATE
            if self.is_postgres:
                updated, conflict_rows = _pg_insert(conn, workspace_id, batch, import_tag, json.dumps(meta), update)
            else:
                updated, conflict_rows = _sqlite_insert(conn, workspace_id, batch, import_tag, meta, update)
            outcome = BatchOutcome(
                rows=len(batch),
                imported=len(batch) - updated - len(conflict_rows),
                skipped=len(conflict_rows),
                updated=updated,
                conflict_rows=conflict_rows,
            )
            conn.execute(
                import_batches.insert().values(
                    import_id=import_id,
                    batch_index=batch_index,
                    workspace_id=workspace_id,
                    import_tag=import_tag,
                    rows=outcome.rows,
                    imported=outcome.imported,
                    skipped=outcome.skipped,
                    updated=outcome.updated,
                    conflict_rows=outcome.conflict_rows,
                )
            )
            if on_progress is not None:
                self._lock_import(conn, import_id, None)
                on_progress(self._progress(conn, import_id))
            return outcome

    def _lock_import(self, conn: sa.Connection, import_id: str, batch_index: int | None) -> None:
        """Serialize one batch (or, with None, the progress update of one import) on PostgreSQL.

        SQLite needs nothing: its single writer lock already serializes transactions.
        """
        if self.is_postgres:
            key = f"{import_id}#{'progress' if batch_index is None else batch_index}"
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})

    @staticmethod
    def _progress(conn: sa.Connection, import_id: str) -> ImportProgress:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(import_batches.c.imported), 0),
                sa.func.coalesce(sa.func.sum(import_batches.c.skipped), 0),
                sa.func.coalesce(sa.func.sum(import_batches.c.updated), 0),
            ).where(import_batches.c.import_id == import_id)
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
        value = out.get(key)
        out[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


_STAGE_COLUMNS = ", ".join(BATCH_COLUMNS)
# A batch COPied straight into contacts: its columns, then the three every row of it shares.
_DIRECT_COLUMNS = ", ".join([*BATCH_COLUMNS, "workspace_id", "tags", "metadata"])


# Merge of an existing contact: fill a field only where it is NULL or '' and the row has a value.
_PG_FILL = ", ".join(
    f"{c} = CASE WHEN (contacts.{c} IS NULL OR contacts.{c} = '') AND EXCLUDED.{c} <> '' "
    f"THEN EXCLUDED.{c} ELSE contacts.{c} END"
    for c in CONTACT_FIELDS
)
_PG_ON_CONFLICT = {
    False: "DO NOTHING RETURNING phone_number, true AS inserted",
    True: (
        f"DO UPDATE SET {_PG_FILL}, "
        "tags = CASE WHEN COALESCE(contacts.tags, '[]'::jsonb) @> EXCLUDED.tags THEN contacts.tags "
        "ELSE COALESCE(contacts.tags, '[]'::jsonb) || EXCLUDED.tags END, "
        "updated_at = now() "
        "RETURNING phone_number, (xmax = 0) AS inserted"
    ),
}


def _pg_insert(
    conn: sa.Connection, workspace_id: str, batch: pd.DataFrame, import_tag: str, meta: str, update: bool
) -> tuple[int, list[int]]:
    """Insert (or merge) the batch in phone order; returns (updated rows, line numbers of rows
    skipped as late conflicts).

    Usually the batch is COPied straight into contacts: dedupe has already set aside the phones
    the workspace had, so only another import adding one meanwhile can collide. Then (and for
    ``update``) the batch goes through a temporary stage and ``INSERT … ON CONFLICT``.
    Either way rows go in sorted by phone, so two imports into one workspace take index locks in
    the same order and cannot deadlock.
    """
    tags = json.dumps([import_tag])
    table = pa.Table.from_pandas(batch[[*BATCH_COLUMNS, "row"]], preserve_index=False)
    dbapi = conn.connection.driver_connection
    with dbapi.cursor() as cur:
        if not update and _copy_straight_in(cur, workspace_id, table, tags, meta):
            return 0, []
        return _insert_via_stage(cur, workspace_id, table, tags, meta, update)


def _copy_straight_in(cur: Any, workspace_id: str, batch: pa.Table, tags: str, meta: str) -> bool:
    """COPY the batch, sorted by phone, into contacts; False, with nothing written, if a phone
    is already there. ~35% cheaper than the staged insert."""
    table = batch.select(list(BATCH_COLUMNS)).sort_by("phone_number")
    for name, value in (("workspace_id", workspace_id), ("tags", tags), ("metadata", meta)):
        table = table.append_column(name, pa.array([value] * table.num_rows, type=pa.string()))
    data = _csv_bytes(table)
    cur.execute("SAVEPOINT contact_import_copy")
    try:
        with cur.copy(f"COPY contacts ({_DIRECT_COLUMNS}) FROM STDIN (FORMAT csv)") as copy:
            copy.write(data)
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT contact_import_copy")
        return False
    cur.execute("RELEASE SAVEPOINT contact_import_copy")
    return True


def _insert_via_stage(
    cur: Any, workspace_id: str, batch: pa.Table, tags: str, meta: str, update: bool
) -> tuple[int, list[int]]:
    """COPY the batch into a temporary stage, then insert (or merge) it with ON CONFLICT.

    The unique index plus ON CONFLICT turns late duplicates into skips, or into merges when
    ``update``; ``xmax = 0`` tells a freshly inserted row from a merged one. The database
    compares the stage with what landed, so only rows that were not inserted come back.
    """
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS contact_import_stage "
        f"({', '.join(c + ' text' for c in BATCH_COLUMNS)}, row_number bigint) ON COMMIT DELETE ROWS"
    )
    with cur.copy(f"COPY contact_import_stage ({_STAGE_COLUMNS}, row_number) FROM STDIN (FORMAT csv)") as copy:
        copy.write(_csv_bytes(batch))
    cur.execute(
        f"WITH landed AS (INSERT INTO contacts (workspace_id, {_STAGE_COLUMNS}, tags, metadata) "
        f"SELECT %s, {_STAGE_COLUMNS}, %s::jsonb, %s::jsonb FROM contact_import_stage "
        "ORDER BY phone_number "
        f"ON CONFLICT (workspace_id, phone_number) {_PG_ON_CONFLICT[update]}) "
        "SELECT stage.row_number, landed.inserted FROM contact_import_stage AS stage "
        "LEFT JOIN landed USING (phone_number) WHERE landed.inserted IS NOT TRUE ORDER BY stage.row_number",
        (workspace_id, tags, meta),
    )
    not_inserted = cur.fetchall()
    updated = sum(1 for _, inserted in not_inserted if inserted is False)
    return updated, [number for number, inserted in not_inserted if inserted is None]


def _csv_bytes(table: pa.Table) -> memoryview:
    """The table as COPY CSV written by Arrow (C speed, no Python row tuples).

    Every value is quoted, so '' stays an empty string, a missing value becomes NULL, and a line
    of a multi-line value that reads ``\\.`` is data, not COPY's end-of-data marker.
    """
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getbuffer()


def _sqlite_insert(
    conn: sa.Connection,
    workspace_id: str,
    batch: pd.DataFrame,
    import_tag: str,
    meta: dict[str, str],
    update: bool,
) -> tuple[int, list[int]]:
    """Insert new phones row by row in phone order and, when ``update``, merge the existing ones.

    The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so the lookup cannot go stale.
    Returns (updated rows, line numbers of rows skipped because their phone exists).
    """
    rows = list(batch[list(BATCH_COLUMNS)].itertuples(index=False, name=None))
    phone_at = BATCH_COLUMNS.index("phone_number")
    existing = set()
    phones = [row[phone_at] for row in rows]
    for start in range(0, len(phones), LOOKUP_CHUNK):
        chunk = phones[start : start + LOOKUP_CHUNK]
        existing.update(
            conn.execute(
                sa.select(contacts.c.phone_number).where(
                    contacts.c.workspace_id == workspace_id, contacts.c.phone_number.in_(chunk)
                )
            ).scalars()
        )
    new_rows = sorted((row for row in rows if row[phone_at] not in existing), key=lambda r: r[phone_at])
    if new_rows:
        values = [
            {"id": uuid.uuid4(), "workspace_id": workspace_id, **dict(zip(BATCH_COLUMNS, row)), "tags": [import_tag], "metadata": meta}
            for row in new_rows
        ]
        conn.execute(contacts.insert(), values)
    merged = sorted((row for row in rows if row[phone_at] in existing), key=lambda r: r[phone_at]) if update else []
    if merged:
        conn.execute(
            _SQLITE_MERGE,
            [{"b_workspace": workspace_id, "b_tag": import_tag, **{f"b_{c}": v for c, v in zip(BATCH_COLUMNS, row)}} for row in merged],
        )
    skipped = [] if update else [int(n) for n, p in zip(batch["row"], phones) if p in existing]
    return len(merged), skipped


def _sqlite_fill(column: str) -> sa.ColumnElement[Any]:
    """The column's value, or the row's when the column is NULL or '' and the row has one."""
    current = contacts.c[column]
    given = sa.bindparam(f"b_{column}")
    return sa.case(
        (sa.and_(sa.or_(current.is_(None), current == ""), given != ""), given), else_=current
    )


def _sqlite_tags_with(tag: sa.BindParameter[str]) -> sa.ColumnElement[Any]:
    """``tags`` with the import tag appended unless already present (SQLite JSON1)."""
    each = sa.func.json_each(contacts.c.tags).table_valued("value")
    present = sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))
    appended = sa.func.json_insert(sa.func.coalesce(contacts.c.tags, sa.literal_column("'[]'")), "$[#]", tag)
    return sa.case((present, contacts.c.tags), else_=sa.type_coerce(appended, sa.JSON))


_SQLITE_MERGE = (
    contacts.update()
    .where(
        contacts.c.workspace_id == sa.bindparam("b_workspace"),
        contacts.c.phone_number == sa.bindparam("b_phone_number"),
    )
    .values(
        {c: _sqlite_fill(c) for c in CONTACT_FIELDS}
        | {"tags": _sqlite_tags_with(sa.bindparam("b_tag")), "updated_at": sa.func.now()}
    )
)
