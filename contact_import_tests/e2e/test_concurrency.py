"""Runs at once into shared workspaces: the same file twice, overlapping files, and two runs of
several files each whose workspaces and phones overlap.

Every run plans its rows as new (a barrier holds every batch until all runs have deduplicated), so
each phone two runs share is decided by the unique index: imported by exactly one run, a late
conflict (skipped) in the other. Inserts in (workspace, phone) order mean no deadlock, even when a
batch holds rows of several workspaces. The contacts_db pool caps insert steps across runs.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline.settings import CONTACTS_DB_POOL
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import LedgerEntry
from contact_import_tests import faults
from contact_import_tests.helpers import phone_of, wait_until, write_numbered_csv

WORKSPACE = "concurrent"


@dataclass(frozen=True)
class Upload:
    """A file of a run: its run config entry and the row numbers (phones) it holds."""

    entry: dict[str, Any]
    workspace_id: str
    numbers: range


def upload(tmp_path: Path, name: str, workspace_id: str, numbers: range, import_tag: str) -> Upload:
    path = write_numbered_csv(tmp_path / name, numbers.start, len(numbers))
    return Upload(faults.file_entry(path, workspace_id, import_tag), workspace_id, numbers)


def _deadlocks(db: sa.Engine) -> int:
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()


def _run_at_once(
    url: str, home: Path, runs: list[list[Upload]], batch_size: int
) -> tuple[list[dict[str, LedgerEntry]], list[str], int]:
    """Start the runs at once; return each run's imports by file key, the run ids and the peak of
    claimed pool slots. Every contact of every file is held until all runs have finished
    deduplicating, so their inserts overlap for certain. No step may fail or retry."""
    instance = dg.DagsterInstance.get()
    held = sorted({(u.workspace_id, phone_of(i)) for files in runs for u in files for i in u.numbers})
    procs, tokens = [], []
    with faults.hold_phones(url, held):
        for files in runs:
            tokens.append(uuid.uuid4().hex)
            procs.append(faults.launch(home, url, tokens[-1], [u.entry for u in files], batch_size))

        def all_deduplicated() -> bool:
            found = [faults.runs_with_token(instance, t) for t in tokens]
            return all(r and faults.step_succeeded(instance, r[0].run_id, "deduped_contacts") for r in found)

        wait_until(all_deduplicated, "every run to finish deduplicating")
    peak_slots = 0
    while any(p.poll() is None for p in procs):
        peak_slots = max(
            peak_slots, instance.event_log_storage.get_concurrency_info(CONTACTS_DB_POOL).active_slot_count
        )
        time.sleep(0.2)
    results = [faults.finish(p) for p in procs]
    for result in results:
        assert result["success"], faults.failure_messages(instance, result["run_id"])
        assert instance.get_run_by_id(result["run_id"]).tags["contact_import/status"] == "completed"
        # A deadlock (or any other error) would show up as a failed or retried step.
        for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY):
            assert faults.count_events(instance, result["run_id"], kind) == 0
        messages = " ".join(e.user_message or "" for e in instance.all_logs(result["run_id"]))
        assert "deadlock detected" not in messages
    imports = [faults.ledger(url, r["run_id"]) for r in results]
    for files, found in zip(runs, imports, strict=False):
        assert sorted(found) == sorted(u.entry["key"] for u in files)
        for entry in found.values():
            _assert_accounted(entry)
    return imports, [r["run_id"] for r in results], peak_slots


def _assert_accounted(entry: LedgerEntry) -> None:
    """Completed, every row imported or skipped as a phone the workspace already had."""
    assert entry.status == "completed"
    assert (entry.failed, entry.updated, entry.imported + entry.skipped) == (0, 0, entry.total)
    assert entry.skipped_by_reason == ({"duplicate_existing": entry.skipped} if entry.skipped else {})


def _assert_contacts(url: str, workspace_id: str, numbers: range) -> None:
    """The workspace holds exactly these phones, each once."""
    db = faults.engine(url)
    store = ContactsStore(url)
    assert faults.contact_counts(db, workspace_id) == (len(numbers), len(numbers))
    assert {c["phone_number"] for c in store.query_contacts(workspace_id)} == {phone_of(i) for i in numbers}
    store.dispose()
    db.dispose()


def _start(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, sa.Engine]:
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ContactsStore(url).create_schema()
    return home, faults.engine(url)


@pytest.mark.slow
def test_same_file_twice_at_once(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows, batch_size = 1000, 250
    home, db = _start(pg_url, tmp_path, monkeypatch)
    runs = [[upload(tmp_path, "contacts.csv", WORKSPACE, range(rows), f"run-{index}")] for index in range(2)]
    imports, _, _ = _run_at_once(pg_url, home, runs, batch_size)
    counts = [entry for found in imports for entry in found.values()]
    _assert_contacts(pg_url, WORKSPACE, range(rows))
    assert [c.total for c in counts] == [rows, rows]
    # Every row the other run inserted first is a late conflict, skipped with its reason.
    assert sum(c.imported for c in counts) == rows
    assert sum(c.skipped for c in counts) == rows
    assert _deadlocks(db) == 0
    db.dispose()
    print(
        f"\nFIGURES same file twice: imported {[c.imported for c in counts]}, skipped {[c.skipped for c in counts]}, "
        f"rows {rows}/{rows}, duplicates 0, deadlocks 0"
    )


@pytest.mark.slow
def test_overlapping_files_at_once_with_pool_of_two(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size, overlap_start, batch_size = 2000, 1000, 250
    home, db = _start(pg_url, tmp_path, monkeypatch)
    dg.DagsterInstance.get().event_log_storage.set_concurrency_slots(CONTACTS_DB_POOL, 2)
    runs = [
        [upload(tmp_path, "first.csv", WORKSPACE, range(0, size), "run-0")],
        [upload(tmp_path, "second.csv", WORKSPACE, range(overlap_start, overlap_start + size), "run-1")],
    ]
    imports, run_ids, peak_slots = _run_at_once(pg_url, home, runs, batch_size)
    counts = [entry for found in imports for entry in found.values()]
    distinct = overlap_start + size
    _assert_contacts(pg_url, WORKSPACE, range(distinct))
    assert [c.total for c in counts] == [size, size]
    assert sum(c.imported for c in counts) == distinct
    assert sum(c.skipped for c in counts) == size - overlap_start
    assert _deadlocks(db) == 0
    in_flight = faults.max_in_flight(dg.DagsterInstance.get(), run_ids, faults.INSERT_STEP_PREFIX)
    assert 1 <= in_flight <= 2
    assert peak_slots <= 2
    db.dispose()
    print(
        f"\nFIGURES overlapping files: imported {[c.imported for c in counts]}, skipped {[c.skipped for c in counts]}, "
        f"distinct {distinct}, duplicates 0, deadlocks 0; pool of 2: max insert steps in flight {in_flight}, "
        f"max claimed slots {peak_slots}"
    )


@pytest.mark.slow
def test_two_runs_of_several_files_sharing_workspaces(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws_a, ws_b, batch_size = "concurrent-a", "concurrent-b", 250
    home, db = _start(pg_url, tmp_path, monkeypatch)
    a1 = upload(tmp_path, "a1.csv", ws_a, range(0, 800), "run-0-a1")
    b1 = upload(tmp_path, "b1.csv", ws_b, range(0, 600), "run-0-b1")
    # The second run lists ws-b first: its batches meet the first run's in the other order.
    b2 = upload(tmp_path, "b2.csv", ws_b, range(300, 900), "run-1-b2")
    a2 = upload(tmp_path, "a2.csv", ws_a, range(400, 1200), "run-1-a2")
    a3 = upload(tmp_path, "a3.csv", ws_a, range(1000, 1300), "run-1-a3")
    (first, second), _, _ = _run_at_once(pg_url, home, [[a1, b1], [b2, a2, a3]], batch_size)
    found = {**first, **second}
    by_file = {name: found[u.entry["key"]] for name, u in {"a1": a1, "b1": b1, "b2": b2, "a2": a2, "a3": a3}.items()}
    assert {name: e.total for name, e in by_file.items()} == {"a1": 800, "b1": 600, "b2": 600, "a2": 800, "a3": 300}
    # a3's rows 1000-1199 are phones a2 imports earlier in its run; 1200-1299 are its own.
    assert (by_file["a3"].imported, by_file["a3"].skipped) == (100, 200)
    # Phones both runs carry (ws-a 400-799, ws-b 300-599) are imported once, skipped by the other run.
    assert sum(by_file[n].imported for n in ("a1", "a2", "a3")) == 1300
    assert sum(by_file[n].skipped for n in ("a1", "a2", "a3")) == 400 + 200
    assert sum(by_file[n].imported for n in ("b1", "b2")) == 900
    assert sum(by_file[n].skipped for n in ("b1", "b2")) == 300
    _assert_contacts(pg_url, ws_a, range(1300))
    _assert_contacts(pg_url, ws_b, range(900))
    assert _deadlocks(db) == 0
    db.dispose()
    print(
        "\nFIGURES two 2-workspace runs at once: "
        + ", ".join(f"{n} {e.imported}+{e.skipped}" for n, e in by_file.items())
        + "; duplicates 0, deadlocks 0"
    )
