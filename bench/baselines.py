"""Baselines the pipeline is measured against, each loading one generated file into a fresh
PostgreSQL database with the indexed ``contacts`` table.

* ``copy``: the floor. Rows already normalized and deduplicated (computed once, cached beside the
  input as ``<name>.normalized.csv``) go straight into ``contacts`` with psycopg 3 ``copy()``.
* ``reference``: the reference design. Read every row, SELECT the workspace's phones into a set,
  normalize each phone with phonenumbers (no cache), drop duplicates, insert 50-row multi-row
  INSERTs from 5 threads, each with its own connection.
* ``to_sql``: pandas. ``read_csv``, phonenumbers, ``drop_duplicates``, then
  ``to_sql(method=None, chunksize=5000)``; normalization is inside the timed part.

Each returns the load-phase wall seconds (after imports, database and schema creation) and the
peak RSS of the measuring process. Run one in its own process so its peak RSS is its own:

    python -m bench.baselines copy bench/data/contacts_100k.csv     # prints one JSON line

``reference-file`` runs the reference algorithm on one file of one workspace into an existing
database (kept), as the reference design's script per upload did; ``bench.many_files`` starts one
such process per file:

    python -m bench.baselines reference-file f0001.csv --workspace ws01 --database bench_ab12cd
"""

from __future__ import annotations

import argparse
import csv
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import phonenumbers
import psycopg

from bench.common import (
    CONTACT_COLUMNS,
    HEADER_TO_COLUMN,
    IMPORT_TAG_JSON,
    PHONE_HEADER,
    WORKSPACE_ID,
    conninfo,
    count_contacts,
    create_schema,
    fresh_database,
    self_peak_rss_mb,
    sqlalchemy_url,
)

REGION = "US"
REFERENCE_BATCH_ROWS = 50
REFERENCE_THREADS = 5
TO_SQL_CHUNKSIZE = 5000
COPY_BLOCK_BYTES = 1 << 20


def normalize_phone(raw: str) -> str | None:
    """E.164 for a valid number, else None; the same rule the pipeline applies (region US).

    A leading "00" exit code counts as "+", as phonenumbers alone does not know it for the US.
    """
    text = raw.strip()
    if not text:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def contact_tuple(row: dict[str, str], phone: str, workspace_id: str = WORKSPACE_ID) -> tuple[str, ...]:
    """One source row as a tuple in CONTACT_COLUMNS order."""
    fields = {column: row.get(header, "") for header, column in HEADER_TO_COLUMN.items()}
    fields.update(workspace_id=workspace_id, phone_number=phone, tags=IMPORT_TAG_JSON)
    return tuple(fields[column] for column in CONTACT_COLUMNS)


def normalized_path(csv_path: Path) -> Path:
    return csv_path.with_name(csv_path.stem + ".normalized.csv")


def prepare_normalized(csv_path: Path) -> dict[str, int]:
    """Normalize and deduplicate ``csv_path`` once (first row wins); cache it with its counts."""
    out = normalized_path(csv_path)
    counts_path = out.with_suffix(".counts.json")
    if out.exists() and counts_path.exists() and out.stat().st_mtime >= csv_path.stat().st_mtime:
        return json.loads(counts_path.read_text())
    counts = {"raw_rows": 0, "valid_phone": 0, "distinct": 0}
    seen: set[str] = set()
    with csv_path.open(newline="", encoding="utf-8") as src, out.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.writer(dst)
        writer.writerow(CONTACT_COLUMNS)
        for row in csv.DictReader(src):
            counts["raw_rows"] += 1
            phone = normalize_phone(row[PHONE_HEADER])
            if phone is None:
                continue
            counts["valid_phone"] += 1
            if phone in seen:
                continue
            seen.add(phone)
            writer.writerow(contact_tuple(row, phone))
    counts["distinct"] = len(seen)
    counts_path.write_text(json.dumps(counts))
    return counts


def copy_file(dbname: str, normalized: Path, workspace_id: str = WORKSPACE_ID) -> None:
    """COPY a normalized file into contacts in one transaction, rewriting its workspace if asked."""
    columns = ", ".join(CONTACT_COLUMNS)
    copy_sql = f"COPY contacts ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)"
    with (
        psycopg.connect(conninfo(dbname)) as conn,
        conn.cursor() as cur,
        cur.copy(copy_sql) as copy,
        normalized.open("rb") as handle,
    ):
        if workspace_id == WORKSPACE_ID:
            while block := handle.read(COPY_BLOCK_BYTES):
                copy.write(block)
        else:
            prefix = WORKSPACE_ID.encode() + b","
            replacement = workspace_id.encode() + b","
            for line in handle:
                copy.write(line.replace(prefix, replacement, 1) if line.startswith(prefix) else line)


def run_copy(csv_path: Path) -> dict[str, float]:
    """(a) The COPY floor: pre-normalized, pre-deduplicated rows straight into contacts."""
    normalized = normalized_path(csv_path)
    prepare_normalized(csv_path)
    with fresh_database() as db:
        create_schema(db)
        started = time.perf_counter()
        copy_file(db, normalized)
        seconds = time.perf_counter() - started
        rows = count_contacts(db)
    return {"seconds": seconds, "peak_rss_mb": self_peak_rss_mb(), "contacts": rows}


def reference_import(csv_path: Path, dbname: str, workspace_id: str = WORKSPACE_ID) -> float:
    """The reference design's algorithm on one file into an existing database; returns its seconds.

    Faithfully slow: no cache, 50-row INSERTs, 5 threads. The workspace's phones already in the
    database count as existing, so files of one workspace imported one after another resolve
    duplicates the way the reference did (the first file's row stays).
    """
    placeholders = "(" + ", ".join(["%s"] * len(CONTACT_COLUMNS)) + ")"
    columns = ", ".join(CONTACT_COLUMNS)

    def insert_sql(n: int) -> str:
        return f"INSERT INTO contacts ({columns}) VALUES " + ", ".join([placeholders] * n)

    local = threading.local()
    connections: list[psycopg.Connection] = []
    lock = threading.Lock()

    def insert_batch(batch: list[tuple[str, ...]]) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(conninfo(dbname), autocommit=True)
            with lock:
                connections.append(conn)
        conn.execute(insert_sql(len(batch)), [value for row in batch for value in row])

    started = time.perf_counter()
    with csv_path.open(newline="", encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    with psycopg.connect(conninfo(dbname)) as conn:
        existing = {
            r[0] for r in conn.execute("SELECT phone_number FROM contacts WHERE workspace_id = %s", (workspace_id,))
        }
    contacts = []
    for row in rows:
        phone = normalize_phone(row[PHONE_HEADER])
        if phone is None or phone in existing:
            continue
        existing.add(phone)
        contacts.append(contact_tuple(row, phone, workspace_id))
    batches = [contacts[i : i + REFERENCE_BATCH_ROWS] for i in range(0, len(contacts), REFERENCE_BATCH_ROWS)]
    with ThreadPoolExecutor(REFERENCE_THREADS) as pool:
        list(pool.map(insert_batch, batches))
    seconds = time.perf_counter() - started
    for conn in connections:
        conn.close()
    return seconds


def run_reference(csv_path: Path) -> dict[str, float]:
    """(b) The reference design's algorithm on one file into a fresh database."""
    with fresh_database() as db:
        create_schema(db)
        seconds = reference_import(csv_path, db)
        inserted = count_contacts(db)
    return {"seconds": seconds, "peak_rss_mb": self_peak_rss_mb(), "contacts": inserted}


def run_to_sql(csv_path: Path) -> dict[str, float]:
    """(c) pandas: read_csv + phonenumbers + drop_duplicates + to_sql(method=None, chunksize=5000)."""
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql import JSONB

    with fresh_database() as db:
        create_schema(db)
        engine = sa.create_engine(sqlalchemy_url(db))
        started = time.perf_counter()
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        frame["phone_number"] = [normalize_phone(p) for p in frame[PHONE_HEADER]]
        frame = frame[frame["phone_number"].notna()].drop_duplicates("phone_number")
        frame = frame.rename(columns=HEADER_TO_COLUMN)
        frame["workspace_id"] = WORKSPACE_ID
        frame["tags"] = [json.loads(IMPORT_TAG_JSON)] * len(frame)
        frame[list(CONTACT_COLUMNS)].to_sql(
            "contacts",
            engine,
            if_exists="append",
            index=False,
            method=None,
            chunksize=TO_SQL_CHUNKSIZE,
            dtype={"tags": JSONB()},
        )
        seconds = time.perf_counter() - started
        engine.dispose()
        inserted = count_contacts(db)
    return {"seconds": seconds, "peak_rss_mb": self_peak_rss_mb(), "contacts": inserted}


BASELINES = {"copy": run_copy, "reference": run_reference, "to_sql": run_to_sql}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", choices=[*BASELINES, "prepare", "reference-file"])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--workspace", default=WORKSPACE_ID, help="reference-file: the file's workspace")
    parser.add_argument("--database", help="reference-file: existing database holding contacts (kept)")
    args = parser.parse_args(argv)
    if args.baseline == "prepare":
        result: dict[str, float] = dict(prepare_normalized(args.csv))
    elif args.baseline == "reference-file":
        if not args.database:
            parser.error("reference-file needs --database")
        result = {"seconds": reference_import(args.csv, args.database, args.workspace)}
    else:
        result = BASELINES[args.baseline](args.csv)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
