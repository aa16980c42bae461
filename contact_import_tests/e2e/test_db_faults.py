"""Database faults mid-run: a killed loader connection and a PostgreSQL restart.

The batch in flight rolls back as a unit, the step retries with backoff, and the run ends with
exact counts; never a half-applied batch, never a duplicate.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_tests import faults
from contact_import_tests.faults import private_pg  # noqa: F401 (fixture)

ROWS = 1200
BATCH_SIZE = 200
BATCHES = ROWS // BATCH_SIZE
WORKSPACE = "faults"


def _source(tmp_path: Path) -> dict[str, Any]:
    return faults.file_entry(faults.write_numbered_csv(tmp_path / "contacts.csv", 0, ROWS), WORKSPACE)


def _assert_complete(url: str, instance: dg.DagsterInstance, run_id: str) -> None:
    """Every row once, every batch recorded once with all its rows, and the import and run add up."""
    db = faults.engine(url)
    assert faults.contact_counts(db, WORKSPACE) == (ROWS, ROWS)
    assert faults.landed_batches(db) == BATCHES
    db.dispose()
    store = ContactsStore(url)
    assert {c["phone_number"] for c in store.query_contacts(WORKSPACE)} == {faults.phone_of(i) for i in range(ROWS)}
    run = instance.get_run_by_id(run_id)
    (entry,) = faults.ledger(url, run.root_run_id or run_id).values()
    assert (faults.outcome(entry), entry.run_id) == (faults.completed(ROWS, ROWS), run_id)
    outcomes = store.recorded_batches([entry.import_id])[entry.import_id]
    assert sorted(outcomes) == list(range(BATCHES))
    assert all((o.rows, o.imported, o.skipped) == (BATCH_SIZE, BATCH_SIZE, 0) for o in outcomes.values())
    store.dispose()
    assert run.tags["contact_import/status"] == "completed"
    assert (int(run.tags["contact_import/imported"]), int(run.tags["contact_import/skipped"])) == (ROWS, 0)


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_loader_connection_is_retried(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    held_batch = 2
    with faults.hold_phones(pg_url, [(WORKSPACE, faults.phone_of(held_batch * BATCH_SIZE))]):
        proc = faults.launch(home, pg_url, uuid.uuid4().hex, [_source(tmp_path)], BATCH_SIZE)
        faults.wait_until(
            lambda: faults.landed_batches(db) == BATCHES - 1 and faults.waiting_on_locks(db) == 1,
            "every batch but the held one to land",
        )
        # The held batch has inserted the rows before the held phone (phone order) and now waits.
        assert faults.terminate_held_inserts(db) == 1
    result = faults.finish(proc)
    instance = dg.DagsterInstance.get()
    assert result["success"], faults.failure_messages(instance, result["run_id"])
    restarts = faults.count_events(instance, result["run_id"], dg.DagsterEventType.STEP_RESTARTED, faults.INSERT_STEP_PREFIX)
    assert restarts == 1
    assert _retry_reason(instance, result["run_id"], "terminating connection due to administrator command")
    _assert_complete(pg_url, instance, result["run_id"])
    db.dispose()
    print(f"\nFIGURES killed loader connection: run succeeded, {restarts} step retry, rows {ROWS}/{ROWS}, lost 0, duplicated 0")


def _retry_reason(instance: dg.DagsterInstance, run_id: str, text: str) -> bool:
    """True when a STEP_UP_FOR_RETRY event's error contains ``text``."""
    for event in faults.step_events(instance, run_id):
        if event.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            error = event.dagster_event.event_specific_data.error
            if error is not None and text in error.to_string():
                return True
    return False


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restart_mid_run(private_pg: faults.PrivateCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = private_pg.url
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ContactsStore(url).create_schema()
    db = faults.engine(url)
    held = faults.batch_heads([(WORKSPACE, range(ROWS))], BATCH_SIZE)[BATCHES // 2 :]
    with faults.hold_phones(url, held):
        proc = faults.launch(home, url, uuid.uuid4().hex, [_source(tmp_path)], BATCH_SIZE)
        faults.wait_until(
            lambda: faults.landed_batches(db) == BATCHES // 2 and faults.waiting_on_locks(db) == len(held),
            "half the batches to land and the rest to wait",
        )
        db.dispose()
        private_pg.restart()  # ends the held batches' sessions and our holding transaction
    result = faults.finish(proc)
    instance = dg.DagsterInstance.get()
    retries = faults.count_events(instance, result["run_id"], dg.DagsterEventType.STEP_RESTARTED, faults.INSERT_STEP_PREFIX)
    assert retries >= len(held)
    if result["success"]:
        outcome, final_run = "completed by retries", result["run_id"]
    else:
        reason = faults.failure_messages(instance, result["run_id"])
        assert "connection" in reason.lower(), reason
        full = faults.finish(faults.launch(home, url, uuid.uuid4().hex, reexecute=(result["run_id"], "all_steps")))
        assert full["success"], faults.failure_messages(instance, full["run_id"])
        outcome, final_run = "failed clearly, completed by ALL_STEPS", full["run_id"]
    _assert_complete(url, instance, final_run)
    print(f"\nFIGURES postgres restart: {outcome}, {retries} step retries, rows {ROWS}/{ROWS}, lost 0, duplicated 0")
