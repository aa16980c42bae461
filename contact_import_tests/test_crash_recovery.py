"""kill -9 of a run (worker and step processes) after batch 1, N/2 and N−1, then recovery.

FROM_FAILURE must never report success with rows missing (Dagster can skip mapped steps that never
started); ALL_STEPS must give exact counts and no duplicates, because batches are idempotent.
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

ROWS = 1200
# 12 batches, more than the 5 insert steps a run has in flight: after an early kill some mapped
# steps never started, the case where Dagster's FROM_FAILURE re-execution skips them.
BATCH_SIZE = 100
BATCHES = ROWS // BATCH_SIZE
IN_FLIGHT = 5
WORKSPACE = "crash"
KEY = f"{WORKSPACE}/imports/contacts.csv"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("landed", [1, BATCHES // 2, BATCHES - 1])
def test_kill_9_then_recover(pg_url: str, tmp_path: Path, landed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    home = faults.make_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    source = faults.write_numbered_csv(tmp_path / "contacts.csv", 0, ROWS)
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    token = uuid.uuid4().hex

    # Hold the first phone of every batch from `landed` on: exactly `landed` batches can commit.
    held = [faults.phone_of(b * BATCH_SIZE) for b in range(landed, BATCHES)]
    with faults.hold_phones(pg_url, WORKSPACE, held):
        proc = faults.launch(home, pg_url, KEY, faults.run_config(WORKSPACE, source, BATCH_SIZE), token)
        try:
            faults.wait_until(
                lambda: faults.landed_batches(db, WORKSPACE) == landed
                and faults.waiting_on_locks(db) == min(len(held), IN_FLIGHT),
                f"{landed} landed batches and {min(len(held), IN_FLIGHT)} held ones",
            )
        finally:
            faults.kill_group(proc)
        killed_at = time.monotonic()
    instance = dg.DagsterInstance.get()
    (run,) = faults.runs_with_token(instance, token)
    # Nothing marks a killed in-process run failed except run monitoring's max runtime; do it as it would.
    assert run.status == dg.DagsterRunStatus.STARTED
    leaked = instance.event_log_storage.get_concurrency_info(CONTACTS_DB_POOL).active_slot_count
    instance.report_run_failed(run)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    assert faults.landed_batches(db, WORKSPACE) == landed
    assert faults.contact_counts(db, WORKSPACE) == (landed * BATCH_SIZE, landed * BATCH_SIZE)

    # (a) FROM_FAILURE: either every row lands, or the summary refuses to report success.
    retry = faults.finish(faults.launch(home, pg_url, KEY, None, token, reexecute=(run.run_id, "from_failure")))
    after_retry = faults.contact_counts(db, WORKSPACE)
    if retry["success"]:
        assert after_retry == (ROWS, ROWS)
    else:
        assert "planned batches have no recorded outcome" in faults.failure_messages(instance, retry["run_id"])
        assert after_retry[0] == after_retry[1] < ROWS

    # (b) ALL_STEPS: exact counts, no duplicates, every batch recorded once, the summary adds up.
    started = time.monotonic()
    full = faults.finish(faults.launch(home, pg_url, KEY, None, token, reexecute=(run.run_id, "all_steps")))
    assert full["success"], faults.failure_messages(instance, full["run_id"])
    assert faults.contact_counts(db, WORKSPACE) == (ROWS, ROWS)
    assert faults.landed_batches(db, WORKSPACE) == BATCHES
    store = ContactsStore(pg_url)
    assert {c["phone_number"] for c in store.query_contacts(WORKSPACE)} == {faults.phone_of(i) for i in range(ROWS)}
    summary = instance.get_run_by_id(full["run_id"]).tags
    assert summary["contact_import/status"] == "completed"
    counts = {k: int(summary[f"contact_import/{k}"]) for k in ("total", "imported", "skipped", "failed", "updated")}
    assert counts == {"total": ROWS, "imported": ROWS, "skipped": 0, "failed": 0, "updated": 0}
    reran = faults.count_events(instance, full["run_id"], dg.DagsterEventType.STEP_SUCCESS, faults.INSERT_STEP_PREFIX)
    print(
        f"\nFIGURES crash after batch {landed}/{BATCHES}: leaked pool slots {leaked}; FROM_FAILURE "
        f"success={retry['success']} rows={after_retry[0]}; ALL_STEPS insert steps {reran}, rows={ROWS} dups=0 lost=0 "
        f"in {time.monotonic() - started:.1f}s ({time.monotonic() - killed_at:.1f}s after the kill)"
    )
    db.dispose()


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
@pytest.mark.postgres
def test_production_dagster_yaml_loads_with_postgres(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((faults.REPO_ROOT / "dagster.yaml").read_text())
    url = sa.engine.make_url(pg_url)
    for name, value in {
        "HOST": url.host, "PORT": str(url.port or 5432), "USER": url.username,
        "PASSWORD": url.password or "", "DB": url.database,
    }.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    instance = dg.DagsterInstance.from_config(str(home))
    _assert_crash_settings(instance)
    queue = instance.get_concurrency_config().run_queue_config
    assert queue is not None and queue.max_concurrent_runs == 4
    assert [(t["key"], t["limit"]) for t in queue.tag_concurrency_limits] == [("contact_import/file", 1)]
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    # Storing an event exercises the NOTIFY that fails under the psycopg 3 driver.
    run = instance.add_run(dg.DagsterRun(job_name="smoke", run_id=str(uuid.uuid4())))
    instance.report_engine_event("storage smoke test", run)
    assert [e.dagster_event.message for e in instance.all_logs(run.run_id)] == ["storage smoke test"]
    instance.dispose()
