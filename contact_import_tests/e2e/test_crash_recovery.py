"""kill -9 of a run (worker and step processes) part-way through its batches, then recovery.

Run monitoring (a real ``dagster-daemon``) marks the killed run failed and frees the pool slots its
killed steps held. FROM_FAILURE must never report success with rows missing (Dagster can skip mapped steps that never
started); ALL_STEPS must give exact counts and no duplicates, because batches are idempotent. A run
carrying several files of several workspaces must recover each import exactly, with batches that
span file boundaries and a later file's phones that an earlier file of the run imports skipped.
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
from contact_import_pipeline.vocabulary import RETRY_STRATEGY_TAG
from contact_import_tests import faults
from contact_import_tests.helpers import dagster_pg_env, phone_of, wait_until, write_numbered_csv
from contact_import_tests.servers import monitoring_daemon, production_home

# 12 batches, more than the 5 insert steps a run has in flight: after an early kill some mapped
# steps never started, the case where Dagster's FROM_FAILURE re-execution skips them.
BATCH_SIZE = 100
BATCHES = 12
IN_FLIGHT = 5
# Run monitoring of the test's instance. It fails a started run whose time is up (production: 2 h;
# here 1 s, with the daemon started only once the run is dead, so the killed run is all it finds)
# and frees the pool slots of a run that ended a while ago (production: 60 s); it looks every second.
MONITORING = {"max_runtime_seconds": 1, "free_slots_after_run_end_seconds": 1, "poll_interval_seconds": 1}


@dataclass(frozen=True)
class Scenario:
    """A run's files and everything an exact recovery must leave behind."""

    files: list[dict[str, Any]]  # run config entries, in upload order
    inserted: list[tuple[str, range]]  # per file: its workspace and the row numbers it inserts
    expected: dict[str, dict[str, Any]]  # file key -> faults.outcome of its import
    contacts: dict[str, range]  # workspace -> row numbers of its contacts afterwards


def one_file(tmp_path: Path) -> Scenario:
    """1,200 new contacts in one file."""
    rows, workspace_id = BATCH_SIZE * BATCHES, "crash"
    entry = faults.file_entry(write_numbered_csv(tmp_path / "contacts.csv", 0, rows), workspace_id)
    return Scenario(
        files=[entry],
        inserted=[(workspace_id, range(rows))],
        expected={entry["key"]: faults.completed(rows, rows)},
        contacts={workspace_id: range(rows)},
    )


def three_files(tmp_path: Path) -> Scenario:
    """Two files of ws-a sharing 50 phones, then one of ws-b with 3 invalid phones: 1,200 rows to
    insert in 12 batches. Batch 1 holds rows of a1 and a2; b1 fills batches 3 to 11."""
    a1 = faults.file_entry(write_numbered_csv(tmp_path / "a1.csv", 0, 150), "crash-a")
    a2 = faults.file_entry(write_numbered_csv(tmp_path / "a2.csv", 100, 200), "crash-a")
    b1 = faults.file_entry(write_numbered_csv(tmp_path / "b1.csv", 0, 900, invalid=3), "crash-b")
    return Scenario(
        files=[a1, a2, b1],
        inserted=[("crash-a", range(0, 150)), ("crash-a", range(150, 300)), ("crash-b", range(0, 900))],
        expected={
            a1["key"]: faults.completed(150, 150),
            # rows 100-149: a1 imports these phones earlier in the run
            a2["key"]: faults.completed(200, 150, skipped_existing=50),
            b1["key"]: faults.completed(903, 900, invalid=3),
        },
        contacts={"crash-a": range(300), "crash-b": range(900)},
    )


def _contact_rows(db: sa.Engine, scenario: Scenario) -> int:
    return sum(faults.contact_counts(db, workspace_id)[0] for workspace_id in scenario.contacts)


def _assert_contacts(url: str, scenario: Scenario) -> None:
    """Every workspace holds exactly its expected phones, each once."""
    db = faults.engine(url)
    store = ContactsStore(url)
    for workspace_id, numbers in scenario.contacts.items():
        assert faults.contact_counts(db, workspace_id) == (len(numbers), len(numbers))
        assert {c["phone_number"] for c in store.query_contacts(workspace_id)} == {phone_of(i) for i in numbers}
    store.dispose()
    db.dispose()


def _from_failure(home: Path, url: str, token: str, run_id: str, scenario: Scenario) -> str:
    """Re-execute the killed run FROM_FAILURE: either every row lands, or the summary refuses to
    report success; an import it does report completed has every one of its rows."""
    instance = dg.DagsterInstance.get()
    db = faults.engine(url)
    rows = BATCH_SIZE * BATCHES
    retry = faults.finish(faults.launch(home, url, token, reexecute=(run_id, "from_failure")))
    after_retry = _contact_rows(db, scenario)
    db.dispose()
    entries = {key: faults.outcome(e) for key, e in faults.ledger(url, run_id).items()}
    if retry["success"]:
        assert entries == scenario.expected
        assert after_retry == rows
    else:
        assert "planned batches have no recorded outcome" in faults.failure_messages(instance, retry["run_id"])
        assert after_retry < rows
        assert any(e["status"] != "completed" for e in entries.values())
        assert all(e == scenario.expected[key] for key, e in entries.items() if e["status"] == "completed"), entries
    completed = sorted(key for key, e in entries.items() if e["status"] == "completed")
    return f"FROM_FAILURE success={retry['success']} rows={after_retry} completed imports {completed}"


def _crash_then_recover(
    url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scenario: Scenario,
    landed: int,
    from_failure: bool = True,
) -> str:
    """Kill the run once ``landed`` batches landed (the next ones held in flight), re-execute it
    FROM_FAILURE (unless not ``from_failure``), then ALL_STEPS as the daemon's automatic retry
    does; assert each one's promise and return a line of figures."""
    home = faults.make_home(tmp_path / "dagster_home", run_monitoring=MONITORING)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    ContactsStore(url).create_schema()
    db = faults.engine(url)
    token = uuid.uuid4().hex
    rows = sum(len(numbers) for _, numbers in scenario.inserted)
    assert rows == BATCH_SIZE * BATCHES

    # Hold the first row of every batch from `landed` on: exactly `landed` batches can commit, and
    # the held ones in flight each hold a slot of the contacts_db pool.
    held = faults.batch_heads(scenario.inserted, BATCH_SIZE)[landed:]
    in_flight = min(len(held), IN_FLIGHT)
    with faults.hold_phones(url, held):
        proc = faults.launch(home, url, token, scenario.files, BATCH_SIZE)
        try:
            wait_until(
                lambda: (
                    faults.landed_batches(db) == landed
                    and faults.waiting_on_locks(db) == in_flight
                    and _claimed_slots(instance) == in_flight
                ),
                f"{landed} landed batches and {in_flight} held ones, each holding a pool slot",
            )
        finally:
            faults.kill_group(proc)
        killed_at = time.monotonic()
    (run,) = faults.runs_with_token(instance, token)
    assert run.tags[RETRY_STRATEGY_TAG] == "ALL_STEPS"  # what the daemon's automatic retry would use
    # Nobody has noticed yet: the run still looks started and its killed steps still hold their slots.
    assert run.status == dg.DagsterRunStatus.STARTED
    assert _claimed_slots(instance) == in_flight
    _failed_by_run_monitoring(instance, home, run.run_id, tmp_path / "daemon.log")
    monitored = time.monotonic() - killed_at
    assert faults.landed_batches(db) == landed
    assert _contact_rows(db, scenario) == landed * BATCH_SIZE
    assert {e.status for e in faults.ledger(url, run.run_id).values()} == {"running"}

    early = _from_failure(home, url, token, run.run_id, scenario) if from_failure else "no FROM_FAILURE"

    # ALL_STEPS: exact counts per import, no duplicates, every batch recorded once.
    started = time.monotonic()
    full = faults.finish(faults.launch(home, url, token, reexecute=(run.run_id, "all_steps")))
    assert full["success"], faults.failure_messages(instance, full["run_id"])
    assert {key: faults.outcome(e) for key, e in faults.ledger(url, run.run_id).items()} == scenario.expected
    _assert_contacts(url, scenario)
    assert faults.landed_batches(db) == BATCHES
    tags = instance.get_run_by_id(full["run_id"]).tags
    assert tags["contact_import/status"] == "completed"
    counts = {k: int(tags[f"contact_import/{k}"]) for k in ("total", "imported", "skipped", "failed", "updated")}
    assert counts == {k: sum(e[k] for e in scenario.expected.values()) for k in counts}
    reran = faults.count_events(instance, full["run_id"], dg.DagsterEventType.STEP_SUCCESS, faults.INSERT_STEP_PREFIX)
    db.dispose()
    return (
        f"run failed and {in_flight} pool slots freed by run monitoring {monitored:.1f}s after the kill; {early}; "
        f"ALL_STEPS insert steps {reran}, rows={rows} dups=0 lost=0 in {time.monotonic() - started:.1f}s ({time.monotonic() - killed_at:.1f}s after the kill)"
    )


def _claimed_slots(instance: dg.DagsterInstance) -> int:
    return instance.event_log_storage.get_concurrency_info(CONTACTS_DB_POOL).active_slot_count


def _failed_by_run_monitoring(instance: dg.DagsterInstance, home: Path, run_id: str, log: Path) -> None:
    """Start a daemon on ``home`` and wait until its run monitoring has failed the killed run (for
    exceeding its runtime) and freed every pool slot."""
    with monitoring_daemon(home, log):
        try:
            wait_until(
                lambda: (
                    instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
                    and _claimed_slots(instance) == 0
                ),
                "run monitoring to fail the killed run and free its pool slots",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-4000:]}") from None
    canceling = [e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_CANCELING)]
    assert any(m.startswith("Canceling due to exceeding maximum runtime of 1 seconds") for m in canceling), canceling


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize("landed", [1, BATCHES // 2, BATCHES - 1])
def test_kill_9_then_recover(pg_url: str, tmp_path: Path, landed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _crash_then_recover(pg_url, tmp_path, monkeypatch, one_file(tmp_path), landed)
    print(f"\nFIGURES crash after batch {landed}/{BATCHES}: {figures}")


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.parametrize(
    ("landed", "from_failure"),
    [
        # a1, a2 and the start of b1 landed; ALL_STEPS at once, as the automatic run retry does.
        (5, False),
        # Part of a1 landed; FROM_FAILURE reruns only the 5 batches in flight (the rest of a1, a2
        # and the start of b1), so it completes a1 and a2 and fails for b1; then ALL_STEPS.
        (1, True),
    ],
    ids=["all-steps", "from-failure-then-all-steps"],
)
def test_kill_9_of_a_run_of_three_files_then_recover(
    pg_url: str, tmp_path: Path, landed: int, from_failure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _crash_then_recover(pg_url, tmp_path, monkeypatch, three_files(tmp_path), landed, from_failure)
    print(f"\nFIGURES crash of a 3-file run after batch {landed}/{BATCHES}: {figures}")


def _assert_crash_settings(instance: dg.DagsterInstance) -> None:
    """Crashed runs are failed by run monitoring and their pool slots freed; the pool caps writers."""
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_max_runtime_seconds == 7200
    assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 5


def test_local_instance_config_enables_run_monitoring_and_pools(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.from_config(str(faults.make_home(tmp_path / "home")))
    _assert_crash_settings(instance)
    assert instance.event_log_storage.supports_global_concurrency_limits
    instance.dispose()


@pytest.mark.slow
def test_production_dagster_yaml_loads_with_postgres(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = production_home(tmp_path)
    for name, value in dagster_pg_env(pg_url).items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(home))
    _assert_crash_settings(instance)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None and queue.max_concurrent_runs == 4
    assert list(queue.tag_concurrency_limits) == []  # a run carries many files: no per-file limit
    # A crashed or failed run is re-executed with all steps, up to 4 times, without anyone acting.
    assert (instance.run_retries_enabled, instance.run_retries_max_retries) == (True, 4)
    assert instance.run_retries_retry_on_asset_or_op_failure
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    # Storing an event exercises the NOTIFY that fails under the psycopg 3 driver.
    run = instance.add_run(dg.DagsterRun(job_name="smoke", run_id=str(uuid.uuid4())))
    instance.report_engine_event("storage smoke test", run)
    assert [e.dagster_event.message for e in instance.all_logs(run.run_id)] == ["storage smoke test"]
    instance.dispose()
