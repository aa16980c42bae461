"""Shared pieces of the harness: data paths, throw-away PostgreSQL databases, the contacts schema
and memory measurement (server processes: ``contact_import_tests.helpers.process_group``). Nothing
here imports the pipeline unconditionally, so the baselines run before the pipeline exists."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import resource
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
SEED = 20240601

# Input sizes by label; 10k is the file imported into the 1M-contact workspace.
SIZES = {"5k": 5_000, "10k": 10_000, "100k": 100_000, "200k": 200_000, "400k": 400_000, "1m": 1_000_000}

# Server to create the throw-away databases on; trust auth for user postgres on localhost.
PG_HOST_ENV = "BENCH_PG_HOST"
PG_HOST = os.environ.get(PG_HOST_ENV, "127.0.0.1:5432")
ADMIN_CONNINFO = f"postgresql://postgres@{PG_HOST}/postgres"

# Columns of the normalized, deduplicated file, in the order COPY reads them.
CONTACT_COLUMNS = (
    "workspace_id",
    "phone_number",
    "firstname",
    "lastname",
    "email",
    "lead_source",
    "st_address",
    "city",
    "state",
    "zip",
    "tags",
)
# Source header -> contacts column, for the files bench.generate writes.
HEADER_TO_COLUMN = {
    "First Name": "firstname",
    "Last Name": "lastname",
    "Email": "email",
    "Address": "st_address",
    "City": "city",
    "State": "state",
    "Zip": "zip",
    "Lead Source": "lead_source",
}
PHONE_HEADER = "Phone"
WORKSPACE_ID = "bench"
# Every baseline tags its rows like the pipeline does, so all lines write the same bytes.
IMPORT_TAG_JSON = '["import:2024-06-01T00:00:00Z"]'

# Seconds to wait for sessions (autovacuum) to leave a template database before giving up.
TEMPLATE_BUSY_RETRIES = 60

FALLBACK_DDL = """
CREATE TABLE contacts (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), workspace_id TEXT NOT NULL,
  phone_number TEXT, firstname VARCHAR NOT NULL, lastname VARCHAR NOT NULL, email TEXT,
  lead_source VARCHAR, market VARCHAR, product VARCHAR, lead_status VARCHAR, st_address VARCHAR,
  city VARCHAR, state VARCHAR, zip VARCHAR, conversation_status TEXT DEFAULT 'New',
  tags JSONB DEFAULT '[]', metadata JSONB DEFAULT '{}', opt_in_through VARCHAR DEFAULT 'manual',
  created_at TIMESTAMPTZ DEFAULT NOW(), updated_at TIMESTAMPTZ DEFAULT NOW());
CREATE UNIQUE INDEX contacts_workspace_phone ON contacts (workspace_id, phone_number);
"""


def data_path(label: str) -> Path:
    return DATA_DIR / f"contacts_{label}.csv"


def ensure_data(label: str) -> Path:
    """The generated input for a size label, generating it on first use."""
    path = data_path(label)
    if not path.exists():
        from bench.generate import generate

        generate(SIZES[label], SEED if label != "10k" else SEED + 10, path)
    return path


def ensure_emoji_data() -> Path:
    """The 1M file with an emoji ending every first name (the memory worst case), generated on first use."""
    path = DATA_DIR / "contacts_1m_emoji.csv"
    if not path.exists():
        from bench.generate import generate

        generate(SIZES["1m"], SEED, path, emoji_share=1.0)
    return path


def conninfo(dbname: str) -> str:
    return f"postgresql://postgres@{PG_HOST}/{dbname}"


def sqlalchemy_url(dbname: str) -> str:
    return f"postgresql+psycopg://postgres@{PG_HOST}/{dbname}"


def create_database(template: str | None = None) -> str:
    """Create an empty database ``bench_<random>`` (optionally a copy of ``template``)."""
    name = f"bench_{secrets.token_hex(6)}"
    clause = f" TEMPLATE {template}" if template else ""
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        for attempt in range(TEMPLATE_BUSY_RETRIES):
            try:
                conn.execute(f"CREATE DATABASE {name}{clause}")
                return name
            except psycopg.errors.ObjectInUse:
                # An autovacuum worker may still be connected to a freshly loaded template.
                if attempt == TEMPLATE_BUSY_RETRIES - 1:
                    raise
                time.sleep(1)
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def fresh_database(template: str | None = None) -> Iterator[str]:
    """A throw-away database that is dropped however the block ends."""
    name = create_database(template)
    try:
        yield name
    finally:
        drop_database(name)


def pipeline_module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def create_schema(dbname: str) -> str:
    """Create ``contacts`` the way the pipeline does when it can; return which way was used."""
    if pipeline_module_exists("contact_import_pipeline.storage.contacts"):
        from contact_import_pipeline.storage.contacts import ContactsStore

        store = ContactsStore(sqlalchemy_url(dbname))
        try:
            store.create_schema()
        finally:
            store.dispose()  # a pooled connection would keep the database from being dropped or copied
        return "ContactsStore.create_schema"
    with psycopg.connect(conninfo(dbname), autocommit=True) as conn:
        conn.execute(FALLBACK_DDL)
    return "fallback DDL"


def count_contacts(dbname: str, workspace_id: str = WORKSPACE_ID) -> int:
    with psycopg.connect(conninfo(dbname)) as conn:
        return conn.execute("SELECT count(*) FROM contacts WHERE workspace_id = %s", (workspace_id,)).fetchone()[0]


def self_peak_rss_mb() -> float:
    """Peak RSS of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS:")


def _peak_kib(pid: int) -> int:
    """The process's own high-water mark, so a peak between two samples is not missed."""
    return _status_kib(pid, "VmHWM:")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            text = (task / "children").read_text()
            kids.extend(int(k) for k in text.split())
    except OSError:
        pass
    return kids


class TreeSampler:
    """Samples the RSS of a process and all its descendants every ``interval`` seconds.

    ``largest_mb`` is the biggest single process seen, by each process's own high-water mark (the
    1 GiB budget applies per process);
    ``total_mb`` the biggest sum over the tree at one instant.
    """

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.largest_kib = 0
        self.total_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo.extend(_children(pid))
            self.largest_kib = max(self.largest_kib, *(_peak_kib(p) for p in pids))
            self.total_kib = max(self.total_kib, sum(_rss_kib(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def largest_mb(self) -> float:
        return self.largest_kib / 1024

    @property
    def total_mb(self) -> float:
        return self.total_kib / 1024
