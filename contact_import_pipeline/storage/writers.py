"""How a batch reaches the contacts table, per dialect, in (workspace, phone) order.

PostgreSQL: the batch is COPied straight into ``contacts``; when a phone collides (another import
added it meanwhile) a savepoint rolls that back and the batch goes through a temporary stage and
one ordered ``INSERT … ON CONFLICT`` that reports the rows that did not land. SQLite: one
transaction holding the write lock looks up the existing phones and inserts the rest.
With ``update`` an existing contact is merged instead of skipped: its empty fields are filled from
the row, a non-empty value is never overwritten, and the import tag is appended. A row's other phones
(``OTHER_PHONES``) go into the created contact's metadata, and into a merged one's when it has none.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import psycopg.copy
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from contact_import_pipeline.model import BATCH_COLUMNS, CONTACT_FIELDS, OTHER_PHONES, BatchImport
from contact_import_pipeline.storage.schema import contacts

# PostgreSQL accepts 65,535 bind parameters per statement and SQLite 32,766; lookups stay below both.
LOOKUP_CHUNK = 10_000
# Rows of a SQLite batch looked up and inserted together: one lookup chunk.
SQLITE_SLICE_ROWS = LOOKUP_CHUNK
# Rows of a batch encoded as one piece of its COPY: ~1.5 MB of CSV, small next to the batch.
COPY_SLICE_ROWS = 10_000

# A row the insert did not add: (import position, line number, True=merged / None=skipped).
NotInserted = tuple[int, int, bool | None]

_STAGE_COLUMNS = ", ".join(BATCH_COLUMNS)
# A batch COPied straight into contacts: its columns, then the three each row takes from its import.
_DIRECT_COLUMNS = ", ".join([*BATCH_COLUMNS, "workspace_id", "tags", "metadata"])
_STAGE_TABLE = "contact_import_batch_stage"


# Merge of an existing contact: fill a field only where it is NULL or '' and the row has a value.
_PG_FILL = ", ".join(
    f"{c} = CASE WHEN (contacts.{c} IS NULL OR contacts.{c} = '') AND EXCLUDED.{c} <> '' "
    f"THEN EXCLUDED.{c} ELSE contacts.{c} END"
    for c in CONTACT_FIELDS
)
_PG_ON_CONFLICT = {
    False: "DO NOTHING RETURNING workspace_id, phone_number, true AS inserted",
    True: (
        f"DO UPDATE SET {_PG_FILL}, "
        "tags = CASE WHEN COALESCE(contacts.tags, '[]'::jsonb) @> EXCLUDED.tags THEN contacts.tags "
        "ELSE COALESCE(contacts.tags, '[]'::jsonb) || EXCLUDED.tags END, "
        "metadata = CASE WHEN contacts.metadata -> 'other_phones' IS NULL "
        "AND EXCLUDED.metadata -> 'other_phones' IS NOT NULL "
        "THEN COALESCE(contacts.metadata, '{}'::jsonb) "
        "|| jsonb_build_object('other_phones', EXCLUDED.metadata -> 'other_phones') "
        "ELSE contacts.metadata END, "
        "updated_at = now() "
        "RETURNING workspace_id, phone_number, (xmax = 0) AS inserted"
    ),
}


def _arrow_batch(imports: Sequence[BatchImport], batch: pd.DataFrame) -> pa.Table:
    """The batch as Arrow, each row with its import's workspace, tags and metadata (taken in C)."""
    table = pa.Table.from_pandas(batch[[*BATCH_COLUMNS, "row", "import"]], preserve_index=False)
    position = table["import"]
    per_import = {
        "workspace_id": [share.workspace_id for share in imports],
        "tags": [json.dumps([share.import_tag]) for share in imports],
    }
    for name, values in per_import.items():
        table = table.append_column(name, pc.take(pa.array(values, type=pa.string()), position))
    return table.append_column("metadata", _row_metadata(imports, position, batch.get(OTHER_PHONES)))


def _row_metadata(imports: Sequence[BatchImport], position: pa.ChunkedArray, other: pd.Series | None) -> pa.Array:
    """Each row's metadata JSON: its import's, with ``other_phones`` added where the row has some.

    Built in Arrow: the import's JSON object is reopened and the list appended (E.164 numbers need
    no escaping).
    """
    metadata = pc.take(pa.array([json.dumps(share.metadata) for share in imports], type=pa.string()), position)
    if other is None:
        return metadata
    phones = pa.array(other, type=pa.string())
    opened = [json.dumps(share.metadata)[:-1] + (", " if share.metadata else "") for share in imports]
    listed = pc.binary_join_element_wise(
        pc.take(pa.array(opened, type=pa.string()), position),
        '"other_phones": ["',
        pc.replace_substring(phones, ",", '", "'),
        '"]}',
        "",
    )
    return pc.if_else(pc.equal(phones, ""), metadata, listed)


def pg_insert(
    conn: sa.Connection, imports: Sequence[BatchImport], batch: pd.DataFrame, update: bool
) -> list[NotInserted]:
    """Insert (or merge) the batch in (workspace, phone) order; returns the rows not inserted.

    Usually the batch is COPied straight into contacts: dedupe has already set aside the phones
    the workspaces had, so only another import adding one meanwhile can collide. Then (and for
    ``update``) the batch goes through a temporary stage and ``INSERT … ON CONFLICT``.
    Either way rows go in sorted by (workspace, phone), the order of the unique index, so two
    batches take index locks in the same order and cannot deadlock.
    """
    # The unique index's order; one workspace (every big file's batches) needs only the phone.
    keys = [("phone_number", "ascending")]
    if len({share.workspace_id for share in imports}) > 1:
        keys.insert(0, ("workspace_id", "ascending"))
    table = _arrow_batch(imports, batch).sort_by(keys)
    dbapi: Any = conn.connection.driver_connection  # psycopg's own connection: COPY and RETURNING rows
    with dbapi.cursor() as cur:
        if not update and _copy_straight_in(cur, table):
            return []
        return _insert_via_stage(cur, table, update)


def _copy_straight_in(cur: Any, table: pa.Table) -> bool:
    """COPY the sorted batch into contacts; False, with nothing written, if a phone is already
    there. ~35% cheaper than the staged insert."""
    cur.execute("SAVEPOINT contact_import_copy")
    try:
        _copy_csv(
            cur,
            f"COPY contacts ({_DIRECT_COLUMNS}) FROM STDIN (FORMAT csv)",
            table.select([*BATCH_COLUMNS, "workspace_id", "tags", "metadata"]),
        )
    except psycopg.errors.UniqueViolation:
        cur.execute("ROLLBACK TO SAVEPOINT contact_import_copy")
        return False
    cur.execute("RELEASE SAVEPOINT contact_import_copy")
    return True


def _insert_via_stage(cur: Any, table: pa.Table, update: bool) -> list[NotInserted]:
    """COPY the batch into a temporary stage, then insert (or merge) it with ON CONFLICT.

    The unique index plus ON CONFLICT turns late duplicates into skips, or into merges when
    ``update``; ``xmax = 0`` tells a freshly inserted row from a merged one. The database
    compares the stage with what landed, so only rows that were not inserted come back.
    """
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_TABLE} "
        f"({', '.join(c + ' text' for c in BATCH_COLUMNS)}, workspace_id text, tags text, metadata text, "
        "import_position integer, row_number bigint) ON COMMIT DELETE ROWS"
    )
    _copy_csv(
        cur,
        f"COPY {_STAGE_TABLE} ({_STAGE_COLUMNS}, workspace_id, tags, metadata, import_position, row_number) "
        "FROM STDIN (FORMAT csv)",
        table.select([*BATCH_COLUMNS, "workspace_id", "tags", "metadata", "import", "row"]),
    )
    cur.execute(
        f"WITH landed AS (INSERT INTO contacts (workspace_id, {_STAGE_COLUMNS}, tags, metadata) "
        f"SELECT workspace_id, {_STAGE_COLUMNS}, tags::jsonb, metadata::jsonb FROM {_STAGE_TABLE} "
        "ORDER BY workspace_id, phone_number "
        f"ON CONFLICT (workspace_id, phone_number) {_PG_ON_CONFLICT[update]}) "
        f"SELECT stage.import_position, stage.row_number, landed.inserted FROM {_STAGE_TABLE} AS stage "
        "LEFT JOIN landed USING (workspace_id, phone_number) WHERE landed.inserted IS NOT TRUE"
    )
    return [(position, row, None if inserted is None else True) for position, row, inserted in cur.fetchall()]


def _copy_csv(cur: Any, statement: str, table: pa.Table) -> None:
    """COPY ``table`` as CSV, slice by slice: Arrow writes the next slice (without the GIL) while a
    psycopg thread sends the last one, so encoding overlaps the server's work and a batch is never
    held as one whole CSV text."""
    with cur.copy(statement, writer=psycopg.copy.QueuedLibpqWriter(cur)) as copy:
        for piece in table.to_batches(max_chunksize=COPY_SLICE_ROWS):
            copy.write(_csv_bytes(piece))


def _csv_bytes(table: pa.Table | pa.RecordBatch) -> memoryview:
    """The table as COPY CSV written by Arrow (C speed, no Python row tuples).

    Every value is quoted, so '' stays an empty string, a missing value becomes NULL, and a line
    of a multi-line value that reads ``\\.`` is data, not COPY's end-of-data marker.
    """
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getbuffer()


def sqlite_insert(
    conn: sa.Connection, imports: Sequence[BatchImport], batch: pd.DataFrame, update: bool
) -> list[NotInserted]:
    """Insert new phones in (workspace, phone) order and, when ``update``, merge the existing ones.

    The transaction holds SQLite's write lock (BEGIN IMMEDIATE), so the lookups cannot go stale.
    Returns the rows not inserted: merged (``update``) or skipped because their phone exists.
    The rows become Python values SQLITE_SLICE_ROWS at a time, in that order: a 100k-row batch
    as a whole took ~150 MB of objects, which a run in one process holds on top of its stages.
    """
    workspaces = np.array([share.workspace_id for share in imports], dtype=object)
    frame = batch.assign(
        **{OTHER_PHONES: batch.get(OTHER_PHONES, ""), "workspace": workspaces[batch["import"].to_numpy(dtype=np.int64)]}
    ).sort_values(["workspace", "phone_number"], kind="stable", ignore_index=True)
    not_inserted: list[NotInserted] = []
    for start in range(0, len(frame), SQLITE_SLICE_ROWS):
        not_inserted += _sqlite_insert_slice(conn, imports, frame.iloc[start : start + SQLITE_SLICE_ROWS], update)
    return not_inserted


def _sqlite_insert_slice(
    conn: sa.Connection, imports: Sequence[BatchImport], frame: pd.DataFrame, update: bool
) -> list[NotInserted]:
    """``sqlite_insert`` of rows already in (workspace, phone) order, at most one lookup chunk."""
    not_inserted: list[NotInserted] = []
    new_rows: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    phone_at = BATCH_COLUMNS.index("phone_number")
    for position, rows in frame.groupby("import", sort=True):
        share = imports[int(position)]
        records = list(rows[list(BATCH_COLUMNS)].itertuples(index=False, name=None))
        existing: set[str] = set(
            conn.execute(
                sa.select(contacts.c.phone_number).where(
                    contacts.c.workspace_id == share.workspace_id,
                    contacts.c.phone_number.in_([record[phone_at] for record in records]),
                )
            ).scalars()
        )
        for record, line, other in zip(records, rows["row"], rows[OTHER_PHONES], strict=True):
            values = dict(zip(BATCH_COLUMNS, record, strict=True))
            other_phones = {"other_phones": other.split(",")} if other else {}
            if record[phone_at] not in existing:
                new_rows.append(
                    {
                        "id": uuid.uuid4(),
                        "workspace_id": share.workspace_id,
                        **values,
                        "tags": [share.import_tag],
                        "metadata": share.metadata | other_phones,
                    }
                )
                continue
            not_inserted.append((int(position), int(line), True if update else None))
            if update:
                merged.append(
                    {
                        "b_workspace": share.workspace_id,
                        "b_tag": share.import_tag,
                        "b_other_phones": json.dumps(other_phones["other_phones"]) if other_phones else None,
                        **{f"b_{c}": v for c, v in values.items()},
                    }
                )
    if new_rows:
        conn.execute(contacts.insert(), sorted(new_rows, key=lambda r: (r["workspace_id"], r["phone_number"])))
    if merged:
        conn.execute(_SQLITE_MERGE, sorted(merged, key=lambda r: (r["b_workspace"], r["b_phone_number"])))
    return not_inserted


def _sqlite_fill(column: str) -> sa.ColumnElement[Any]:
    """The column's value, or the row's when the column is NULL or '' and the row has one."""
    current = contacts.c[column]
    given: sa.BindParameter[str] = sa.bindparam(f"b_{column}")
    return sa.case((sa.and_(sa.or_(current.is_(None), current == ""), given != ""), given), else_=current)


def _sqlite_tags_with(tag: sa.BindParameter[str]) -> sa.ColumnElement[Any]:
    """``tags`` with the import tag appended unless already present (SQLite JSON1)."""
    each = sa.func.json_each(contacts.c.tags).table_valued("value")
    present = sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))
    appended = sa.func.json_insert(sa.func.coalesce(contacts.c.tags, sa.literal_column("'[]'")), "$[#]", tag)
    return sa.case((present, contacts.c.tags), else_=sa.type_coerce(appended, sa.JSON))


def _sqlite_other_phones(given: sa.BindParameter[str]) -> sa.ColumnElement[Any]:
    """``metadata`` with the row's other phones (a JSON list, or NULL) added unless it has some already."""
    current = contacts.c.metadata
    present = sa.func.json_extract(current, "$.other_phones").is_not(None)
    added = sa.func.json_set(
        sa.func.coalesce(current, sa.literal_column("'{}'")), "$.other_phones", sa.func.json(given)
    )
    return sa.case((sa.or_(given.is_(None), present), current), else_=sa.type_coerce(added, sa.JSON))


_SQLITE_MERGE = (
    contacts.update()
    .where(
        contacts.c.workspace_id == sa.bindparam("b_workspace"),
        contacts.c.phone_number == sa.bindparam("b_phone_number"),
    )
    .values(
        {c: _sqlite_fill(c) for c in CONTACT_FIELDS}
        | {
            "tags": _sqlite_tags_with(sa.bindparam("b_tag")),
            "metadata": _sqlite_other_phones(sa.bindparam("b_other_phones")),
            "updated_at": sa.func.now(),
        }
    )
)
