"""Database faults mid-run: a killed loader connection and a PostgreSQL restart.

The batch in flight rolls back as a unit, the insert step retries with backoff (its RetryPolicy),
and the run itself succeeds with exact counts: no re-execution, never a half-applied batch, never
a duplicate.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_tests import faults
from contact_import_tests.helpers import PrivateCluster, phone_of, wait_until, write_numbered_csv

ROWS = 1200
BATCH_SIZE = 200
BATCHES = ROWS // BATCH_SIZE
WORKSPACE = "faults"
STEP_RETRIES = 4  # insert_batch's RetryPolicy: attempts after 1, 3, 7 and 15 s (each ±1 s)
# What PostgreSQL tells a session it ends: pg_terminate_backend, and every session at a fast shutdown.
ENDED_BY_ADMIN = "terminating connection due to administrator command"


def _source(tmp_path: Path) -> dict[str, Any]:
    return faults.file_entry(write_numbered_csv(tmp_path / "contacts.csv", 0, ROWS), WORKSPACE)


def _assert_complete(url: str, instance: dg.DagsterInstance, run_id: str) -> None:
    """Every row once, every batch recorded once with all its rows, and the import and run add up."""
    db = faults.engine(url)
    assert faults.contact_counts(db, WORKSPACE) == (ROWS, ROWS)
    assert faults.landed_batches(db) == BATCHES
    db.dispose()
    store = ContactsStore(url)
    assert {c["phone_number"] for c in store.query_contacts(WORKSPACE)} == {phone_of(i) for i in range(ROWS)}
    run = instance.get_run_by_id(run_id)
    (entry,) = faults.ledger(url, run.root_run_id or run_id).values()
    assert (faults.outcome(entry), entry.run_id) == (faults.completed(ROWS, ROWS), run_id)
    outcomes = store.recorded_batches([entry.import_id])[entry.import_id]
    assert sorted(outcomes) == list(range(BATCHES))
    assert all((o.rows, o.imported, o.skipped) == (BATCH_SIZE, BATCH_SIZE, 0) for o in outcomes.values())
    store.dispose()
    assert run.tags["contact_import/status"] == "completed"
    assert (int(run.tags["contact_import/imported"]), int(run.tags["contact_import/skipped"])) == (ROWS, 0)


def _insert_step(batch_index: int) -> str:
    return f"{faults.INSERT_STEP_PREFIX}[batch_{batch_index:05d}]"


def _retries(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Per step that was retried, the error of each failed attempt, in order."""
    errors: dict[str, list[str]] = {}
    for event in faults.step_events(instance, run_id):
        if event.dagster_event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            error = event.dagster_event.event_specific_data.error
            errors.setdefault(event.step_key, []).append(error.to_string() if error is not None else "")
    return errors


def _assert_succeeded_alone(instance: dg.DagsterInstance, token: str, result: dict[str, Any]) -> None:
    """The run succeeded by itself: no step failed for good and no re-execution was needed."""
    assert result["success"], faults.failure_messages(instance, result["run_id"])
    assert [run.run_id for run in faults.runs_with_token(instance, token)] == [result["run_id"]]
    assert faults.count_events(instance, result["run_id"], dg.DagsterEventType.STEP_FAILURE) == 0


@pytest.mark.slow
def test_killed_loader_connection_is_retried(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    token = uuid.uuid4().hex
    held_batch = 2
    with faults.hold_phones(pg_url, [(WORKSPACE, phone_of(held_batch * BATCH_SIZE))]):
        proc = faults.launch(home, pg_url, token, [_source(tmp_path)], BATCH_SIZE)
        wait_until(
            lambda: faults.landed_batches(db) == BATCHES - 1 and faults.waiting_on_locks(db) == 1,
            "every batch but the held one to land",
        )
        # The held batch has inserted the rows before the held phone (phone order) and now waits.
        assert faults.terminate_held_inserts(db) == 1
    result = faults.finish(proc)
    db.dispose()
    instance = dg.DagsterInstance.get()
    _assert_succeeded_alone(instance, token, result)
    retries = _retries(instance, result["run_id"])
    assert list(retries) == [_insert_step(held_batch)]
    (error,) = retries[_insert_step(held_batch)]
    assert ENDED_BY_ADMIN in error
    _assert_complete(pg_url, instance, result["run_id"])
    print(f"\nFIGURES killed loader connection: run succeeded, 1 step retry, rows {ROWS}/{ROWS}, lost 0, duplicated 0")


@pytest.mark.slow
def test_postgres_restart_mid_run_is_outlasted_by_step_retries(
    private_pg: PrivateCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pg_ctl restart -m fast`` while half the batches wait: their sessions end, their steps retry
    until the server is back, and the run succeeds on its own."""
    url = private_pg.url
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    ContactsStore(url).create_schema()
    db = faults.engine(url)
    token = uuid.uuid4().hex
    held = faults.batch_heads([(WORKSPACE, range(ROWS))], BATCH_SIZE)[BATCHES // 2 :]
    with faults.hold_phones(url, held):
        proc = faults.launch(home, url, token, [_source(tmp_path)], BATCH_SIZE)
        wait_until(
            lambda: faults.landed_batches(db) == BATCHES // 2 and faults.waiting_on_locks(db) == len(held),
            "half the batches to land and the rest to wait",
        )
        db.dispose()
        private_pg.restart()  # ends the held batches' sessions and our holding transaction
    result = faults.finish(proc)
    instance = dg.DagsterInstance.get()
    _assert_succeeded_alone(instance, token, result)
    retries = _retries(instance, result["run_id"])
    # Exactly the held batches were retried, each first because the restart ended its session;
    # a retry that came while the server was still starting may have needed another one.
    assert sorted(retries) == [_insert_step(i) for i in range(BATCHES // 2, BATCHES)]
    assert all(ENDED_BY_ADMIN in errors[0] and len(errors) <= STEP_RETRIES for errors in retries.values()), retries
    _assert_complete(url, instance, result["run_id"])
    attempts = sum(len(errors) for errors in retries.values())
    print(
        f"\nFIGURES postgres restart: run succeeded by {attempts} step retries, rows {ROWS}/{ROWS}, lost 0, duplicated 0"
    )
