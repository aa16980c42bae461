"""Two runs at once into one workspace: the same file, and overlapping files.

Both runs plan every row as new (a barrier holds their batches until both have deduplicated), so
each overlapping phone is decided by the unique index: imported by exactly one run, a late
conflict (skipped) in the other. Inserts in phone order mean no deadlock. The contacts_db pool
caps insert steps across runs.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline.contacts_store import ContactsStore
from contact_import_pipeline.settings import CONTACTS_DB_POOL
from contact_import_tests import faults

WORKSPACE = "concurrent"


def _deadlocks(db: sa.Engine) -> int:
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        ).scalar_one()


def _run_pair(
    pg_url: str, home: Path, files: list[tuple[Path, int, int]], batch_size: int
) -> tuple[list[dict[str, int]], list[str], int]:
    """Start one run per ``(file, first row, rows)`` at once; return their counts, run ids and peak pool slots.

    The first phone of every batch is held until both runs have finished deduplicating, so their
    inserts overlap for certain.
    """
    instance = dg.DagsterInstance.get()
    held = sorted({faults.phone_of(start + i) for _, start, count in files for i in range(0, count, batch_size)})
    procs, tokens = [], []
    with faults.hold_phones(pg_url, WORKSPACE, held):
        for index, (path, _, _) in enumerate(files):
            tokens.append(uuid.uuid4().hex)
            key = f"{WORKSPACE}/imports/{path.name}"
            config = faults.run_config(WORKSPACE, path, batch_size)
            config["ops"]["raw_csv"]["config"]["import_tag"] = f"run-{index}"
            procs.append(faults.launch(home, pg_url, key, config, tokens[-1]))

        def both_deduplicated() -> bool:
            runs = [faults.runs_with_token(instance, t) for t in tokens]
            return all(r and faults.step_succeeded(instance, r[0].run_id, "deduped_contacts") for r in runs)

        faults.wait_until(both_deduplicated, "both runs to finish deduplicating")
    peak_slots = 0
    while any(p.poll() is None for p in procs):
        peak_slots = max(peak_slots, instance.event_log_storage.get_concurrency_info(CONTACTS_DB_POOL).active_slot_count)
        time.sleep(0.2)
    results = [faults.finish(p) for p in procs]
    counts = []
    for result in results:
        assert result["success"], faults.failure_messages(instance, result["run_id"])
        tags = instance.get_run_by_id(result["run_id"]).tags
        assert tags["contact_import/status"] == "completed"
        counts.append({k: int(tags[f"contact_import/{k}"]) for k in ("total", "imported", "skipped", "failed")})
        # No step failed or retried: a deadlock (or any other error) would show up as one.
        for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY):
            assert faults.count_events(instance, result["run_id"], kind) == 0
        messages = " ".join(e.user_message or "" for e in instance.all_logs(result["run_id"]))
        assert "deadlock detected" not in messages
    return counts, [r["run_id"] for r in results], peak_slots


@pytest.mark.slow
@pytest.mark.postgres
def test_same_file_twice_at_once(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows, batch_size = 1000, 250
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    source = faults.write_numbered_csv(tmp_path / "contacts.csv", 0, rows)
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    counts, _, _ = _run_pair(pg_url, home, [(source, 0, rows), (source, 0, rows)], batch_size)
    assert faults.contact_counts(db, WORKSPACE) == (rows, rows)
    assert sum(c["imported"] for c in counts) == rows
    # Every row the other run inserted first is a late conflict, skipped with its reason.
    assert all(c["total"] == rows and c["imported"] + c["skipped"] == rows and c["failed"] == 0 for c in counts)
    assert _deadlocks(db) == 0
    db.dispose()
    print(f"\nFIGURES same file twice: imported {[c['imported'] for c in counts]}, skipped {[c['skipped'] for c in counts]}, "
          f"rows {rows}/{rows}, duplicates 0, deadlocks 0")


@pytest.mark.slow
@pytest.mark.postgres
def test_overlapping_files_at_once_with_pool_of_two(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size, overlap_start, batch_size = 2000, 1000, 250
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    dg.DagsterInstance.get().event_log_storage.set_concurrency_slots(CONTACTS_DB_POOL, 2)
    first = faults.write_numbered_csv(tmp_path / "first.csv", 0, size)
    second = faults.write_numbered_csv(tmp_path / "second.csv", overlap_start, size)
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    counts, run_ids, peak_slots = _run_pair(pg_url, home, [(first, 0, size), (second, overlap_start, size)], batch_size)
    distinct = overlap_start + size
    overlap = size - overlap_start
    assert faults.contact_counts(db, WORKSPACE) == (distinct, distinct)
    assert sum(c["imported"] for c in counts) == distinct
    assert sum(c["skipped"] for c in counts) == overlap
    assert all(c["total"] == size and c["imported"] + c["skipped"] == size and c["failed"] == 0 for c in counts)
    assert _deadlocks(db) == 0
    in_flight = faults.max_in_flight(dg.DagsterInstance.get(), run_ids, faults.INSERT_STEP_PREFIX)
    assert 1 <= in_flight <= 2
    assert peak_slots <= 2
    db.dispose()
    print(f"\nFIGURES overlapping files: imported {[c['imported'] for c in counts]}, skipped {[c['skipped'] for c in counts]}, "
          f"distinct {distinct}, duplicates 0, deadlocks 0; pool of 2: max insert steps in flight {in_flight}, "
          f"max claimed slots {peak_slots}")
