"""A transient fault needs no human: the contacts database goes away while a run inserts and stays
away longer than the insert step's retries last; once it is back, the daemon's automatic ALL_STEPS
run retry (dagster.yaml ``run_retries``) finishes every import of the run with exact counts.

Everything is real: the repository's production dagster.yaml (storage on a fresh PostgreSQL
database), dagster-webserver and dagster-daemon, the run launched over GraphQL, and the contacts
database on a PostgreSQL cluster of this test alone, which it stops and starts again.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.app.graphql import DagsterApi, RunState
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.defs.progress import read_progress
from contact_import_pipeline.settings import RUN_RETRY_DELAY_ENV
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.vocabulary import RETRY_NUMBER_TAG, WILL_RETRY_TAG
from contact_import_tests import faults
from contact_import_tests.helpers import PrivateCluster, dagster_pg_env, phone_of, wait_until, write_numbered_csv
from contact_import_tests.servers import DagsterServers, dagster_servers, production_home

pytestmark = [pytest.mark.slow, pytest.mark.servers]

WORKSPACE = "retry"
BATCH_SIZE = 200
# Three files of one workspace, 1,400 rows to insert in 7 batches: f2 repeats 200 phones f1
# imports earlier in the run, f3 has 2 invalid phones.
FILES = {"f1.csv": (range(0, 600), 0), "f2.csv": (range(400, 1000), 0), "f3.csv": (range(1000, 1400), 2)}
INSERTED = [(WORKSPACE, range(0, 600)), (WORKSPACE, range(600, 1000)), (WORKSPACE, range(1000, 1400))]
BATCHES = 7
EXPECTED = {
    f"{WORKSPACE}/imports/f1.csv": faults.completed(600, 600),
    f"{WORKSPACE}/imports/f2.csv": faults.completed(600, 400, skipped_existing=200),
    f"{WORKSPACE}/imports/f3.csv": faults.completed(402, 400, invalid=2),
}
# Batches 0-2 land, then batch 3 waits on a held phone when the database stops.
HELD_BATCH = 3
HELD_STEP = f"{faults.INSERT_STEP_PREFIX}[batch_{HELD_BATCH:05d}]"
STEP_RETRIES = 4  # insert_batch's RetryPolicy
# Seconds a retried run waits first (5 s, 10 s, ...), instead of production's 15 s, 30 s, ...
RETRY_DELAY_SECONDS = 5
PROGRESS = (
    "status",
    "total",
    "processed",
    "imported",
    "updated",
    "skipped",
    "failed",
    "current_batch",
    "total_batches",
)
# Server start, a run, its step retries (~15 s), the run retry and its wait, on a loaded 2-core box.
RUN_TIMEOUT_SECONDS = 420.0


def _wait_finished(api: DagsterApi, run_id: str, servers: DagsterServers) -> RunState:
    def finished() -> RunState | None:
        state = api.read_run(run_id)
        return state if state.finished else None

    try:
        return wait_until(finished, f"run {run_id} to finish", timeout=RUN_TIMEOUT_SECONDS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{servers.log_tail()}") from None


def _settled_group(instance: dg.DagsterInstance, root_run_id: str, servers: DagsterServers) -> list[dg.DagsterRun]:
    """The run group, oldest first, once a run of it succeeded or its last run failed for good."""

    def settled() -> list[dg.DagsterRun] | None:
        group = instance.get_run_group(root_run_id)
        runs = sorted(group[1], key=lambda r: int(r.tags.get(RETRY_NUMBER_TAG, "0"))) if group else []
        if not runs or not runs[-1].is_finished:
            return None
        last = runs[-1]
        if last.status == dg.DagsterRunStatus.SUCCESS or last.tags.get(WILL_RETRY_TAG) == "false":
            return runs
        return None

    try:
        return wait_until(settled, f"the retries of run {root_run_id} to settle", timeout=RUN_TIMEOUT_SECONDS)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{servers.log_tail()}") from None


@pytest.mark.timeout(900)
def test_database_outage_longer_than_step_retries_is_finished_by_the_automatic_run_retry(
    private_pg: PrivateCluster,
    instance_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = private_pg.url
    home = production_home(tmp_path)
    env = {
        **dagster_pg_env(instance_db),
        "CONTACTS_DATABASE_URL": url,
        "CONTACT_BUCKET_DIR": str(tmp_path / "bucket"),
        RUN_RETRY_DELAY_ENV: str(RETRY_DELAY_SECONDS),
    }
    for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    ContactsStore(url).create_schema()
    sources = [
        str(write_numbered_csv(tmp_path / name, numbers.start, len(numbers), invalid=invalid))
        for name, (numbers, invalid) in FILES.items()
    ]
    held = faults.batch_heads(INSERTED, BATCH_SIZE)[HELD_BATCH : HELD_BATCH + 1]
    db = faults.engine(url)

    with dagster_servers(home, env, tmp_path / "logs") as servers:
        api = DagsterApi(servers.url)
        with faults.hold_phones(url, held):
            launched = trigger_import(sources, WORKSPACE, batch_size=BATCH_SIZE, dagster_url=servers.url)
            wait_until(
                lambda: faults.landed_batches(db) == HELD_BATCH and faults.waiting_on_locks(db) == 1,
                f"batches 1-{HELD_BATCH} to land and batch {HELD_BATCH + 1} to wait",
                timeout=RUN_TIMEOUT_SECONDS,
            )
            db.dispose()
            private_pg.stop()  # the contacts database goes away in the middle of an insert
        stopped_at = time.monotonic()
        first = _wait_finished(api, launched.run_id, servers)
        down_seconds = time.monotonic() - stopped_at
        private_pg.start()  # back only after the run failed: the outage outlasted the step retries
        instance = dg.DagsterInstance.get()
        runs = _settled_group(instance, launched.run_id, servers)
        last = runs[-1]
        assert last.status == dg.DagsterRunStatus.SUCCESS, (
            faults.failure_messages(instance, last.run_id) + servers.log_tail()
        )

        # The held batch was retried as the step's RetryPolicy allows, then the run failed.
        assert first.status == "FAILURE"
        assert (
            faults.count_events(instance, launched.run_id, dg.DagsterEventType.STEP_UP_FOR_RETRY, HELD_STEP)
            == STEP_RETRIES
        )
        assert faults.count_events(instance, launched.run_id, dg.DagsterEventType.STEP_FAILURE, HELD_STEP) == 1
        # No person acted: every later run of the group is an automatic retry, numbered in turn.
        assert len(runs) >= 2 and runs[0].run_id == launched.run_id
        assert [r.tags.get(RETRY_NUMBER_TAG) for r in runs] == [None, *(str(n) for n in range(1, len(runs)))]
        assert [r.status for r in runs[:-1]] == [dg.DagsterRunStatus.FAILURE] * (len(runs) - 1)
        assert all(r.parent_run_id == p.run_id for p, r in itertools.pairwise(runs))
        tags = last.tags
        instance.dispose()

    imports = faults.ledger(url, launched.run_id)
    assert {key: faults.outcome(entry) for key, entry in imports.items()} == EXPECTED
    assert {(e.run_id, e.origin) for e in imports.values()} == {(last.run_id, "graphql")}
    db = faults.engine(url)
    assert faults.contact_counts(db, WORKSPACE) == (1400, 1400)
    assert faults.landed_batches(db) == BATCHES
    db.dispose()
    store = ContactsStore(url)
    assert {c["phone_number"] for c in store.query_contacts(WORKSPACE)} == {phone_of(i) for i in range(1400)}
    store.dispose()
    progress = read_progress(tags)
    assert {name: progress.get(name) for name in PROGRESS} == {
        "status": "completed",
        "total": 1602,
        "processed": 1602,
        "imported": 1400,
        "updated": 0,
        "skipped": 200,
        "failed": 2,
        "current_batch": BATCHES,
        "total_batches": BATCHES,
    }
    print(
        f"\nFIGURES database down {down_seconds:.0f}s (step retries exhausted); {len(runs) - 1} automatic run "
        f"retries; rows 1400/1400, lost 0, duplicated 0"
    )
