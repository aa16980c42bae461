"""The repo's production dagster.yaml, brought up for real: PostgreSQL storage, webserver + daemon.

An import launched over GraphQL is dequeued by the daemon, runs with a process per step, and leaves
its run and events in the PostgreSQL database the DAGSTER_PG_* variables point at; its step outputs
live under $DAGSTER_HOME/storage while it runs, and the daemon's sweep deletes them once it succeeded.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline.app.graphql import DagsterApi
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.settings import OUTPUT_SWEEP_SECONDS, STEP_PROCESSES_BYTES_ENV
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_tests.helpers import dagster_pg_env, insert_rows, numbered_rows, phone_of, write_csv
from contact_import_tests.servers import dagster_servers, production_home, run_outputs_folder

RUN_TIMEOUT_SECONDS = 240.0
# The sweep looks every OUTPUT_SWEEP_SECONDS; a loaded machine may delay a tick a lot.
SWEEP_TIMEOUT_SECONDS = 8 * OUTPUT_SWEEP_SECONDS


@pytest.mark.slow
@pytest.mark.servers
def test_production_instance_runs_an_import_into_postgres_storage(
    tmp_path: Path, pg_url: str, instance_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = production_home(tmp_path)
    env = {
        "CONTACTS_DATABASE_URL": pg_url,
        "CONTACT_BUCKET_DIR": str(tmp_path / "bucket"),
        "CONTACT_IMPORT_CLEANUP": "keep",
        **dagster_pg_env(instance_db),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # Only for this caller: every file counts as large, so trigger launches a run with a process per
    # step, as for a big upload; its steps hand their outputs over through the instance's storage.
    monkeypatch.setenv(STEP_PROCESSES_BYTES_ENV, "1")
    store = ContactsStore(pg_url)
    store.create_schema()
    existing = numbered_rows(2)
    pre = [(r[0], r[1], r[2], "", "", "", "", "", "", "", "", phone_of(i)) for i, r in enumerate(existing)]
    assert insert_rows(store, pre, workspace_id="ws1").imported == 2
    rows = [*numbered_rows(250), ["Bad", "Phone", "", "12345"]]
    source = write_csv(tmp_path / "people.csv", ["First Name", "Last Name", "Email", "Mobile Phone"], rows)

    with dagster_servers(home, env, tmp_path / "logs") as servers:
        launched = trigger_import([str(source)], "ws1", tag="prod", batch_size=100, dagster_url=servers.url)
        outputs = run_outputs_folder(home, launched.run_id)
        api = DagsterApi(servers.url)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        state = api.read_run(launched.run_id)
        written: set[str] = set()  # step outputs seen on disk while the run ran
        while not state.finished:
            assert time.monotonic() < deadline, f"run still {state.status}\n{servers.log_tail()}"
            if outputs.is_dir():
                written |= {p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file()}
            time.sleep(0.5)
            state = api.read_run(launched.run_id)
        assert state.status == "SUCCESS", servers.log_tail()
        assert {k: state.progress[k] for k in ("status", "total", "imported", "updated", "skipped", "failed")} == {
            "status": "completed",
            "total": 251,
            "imported": 248,
            "updated": 0,
            "skipped": 2,
            "failed": 1,
        }
        assert {"raw_csv/result", "normalized_contacts/result"} <= written, written

        deadline = time.monotonic() + SWEEP_TIMEOUT_SECONDS
        while outputs.exists():
            assert time.monotonic() < deadline, f"step outputs of {launched.run_id} not swept\n{servers.log_tail()}"
            time.sleep(1)

    assert store.count_contacts("ws1") == 250
    # The run and its events are in PostgreSQL, in the database DAGSTER_PG_DB names.
    engine = sa.create_engine(instance_db)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id, status FROM runs WHERE pipeline_name = 'import_job'")).all()
        materialized = conn.execute(
            sa.text(
                "SELECT count(*) FROM event_logs WHERE run_id = :r AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            ),
            {"r": launched.run_id},
        ).scalar_one()
    engine.dispose()
    assert runs == [(launched.run_id, "SUCCESS")]  # the new-file sensor did not import the upload again
    assert materialized == 4  # raw_csv, normalized_contacts, deduped_contacts, contacts

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    instance.dispose()
    (entry,) = Ledger(store).entries(workspace_id="ws1", import_tag="prod")
    assert (entry.run_id, entry.root_run_id, entry.origin, entry.file, entry.status) == (
        launched.run_id,
        launched.run_id,
        "graphql",
        "ws1/imports/people.csv",
        "completed",
    )
    assert (entry.total, entry.imported, entry.updated, entry.skipped, entry.failed) == (251, 248, 0, 2, 1)
    assert (entry.skipped_by_reason, entry.failed_by_reason) == ({"duplicate_existing": 2}, {"invalid_phone": 1})
    store.dispose()
