"""The repo's production dagster.yaml, brought up for real: PostgreSQL storage, webserver + daemon.

An import launched over GraphQL is dequeued by the daemon, runs, and leaves its run and events in
the PostgreSQL database the DAGSTER_PG_* variables point at; history reads it back from there.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline import history
from contact_import_pipeline.contacts_store import ContactsStore
from contact_import_pipeline.dagster_api import DagsterApi, trigger_import
from contact_import_tests.servers import dagster_servers, production_home
from contact_import_tests.conftest import batch_frame, dagster_pg_env
from contact_import_tests.test_pipeline import numbered_rows, write_csv

RUN_TIMEOUT_SECONDS = 240.0


@pytest.mark.slow
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
    store = ContactsStore(pg_url)
    store.create_schema()
    existing = numbered_rows(2)
    pre = [(r[0], r[1], r[2], "", "", "", "", "", "", "", "", f"+12122000{i:03d}") for i, r in enumerate(existing)]
    store.insert_batch(import_id="pre", batch_index=0, workspace_id="ws1", import_tag="pre", board_phone_number=None,
                       batch=batch_frame(pre, [2, 3]))
    rows = numbered_rows(250) + [["Bad", "Phone", "", "12345"]]
    source = write_csv(tmp_path / "people.csv", ["First Name", "Last Name", "Email", "Mobile Phone"], rows)

    with dagster_servers(home, env, tmp_path / "logs") as servers:
        launched = trigger_import(str(source), "ws1", tag="prod", batch_size=100, dagster_url=servers.url)
        api = DagsterApi(servers.url)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        state = api.read_run(launched.run_id)
        while not state.finished:
            assert time.monotonic() < deadline, f"run still {state.status}\n{servers.log_tail()}"
            time.sleep(1)
            state = api.read_run(launched.run_id)
        assert state.status == "SUCCESS", servers.log_tail()
        assert {k: state.progress[k] for k in ("status", "total", "imported", "updated", "skipped", "failed")} == {
            "status": "completed", "total": 251, "imported": 248, "updated": 0, "skipped": 2, "failed": 1,
        }

    assert store.count_contacts("ws1") == 250
    # The run and its events are in PostgreSQL, in the database DAGSTER_PG_DB names.
    engine = sa.create_engine(instance_db)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id, status FROM runs WHERE pipeline_name = 'import_job'")).all()
        materialized = conn.execute(
            sa.text("SELECT count(*) FROM event_logs WHERE run_id = :r AND dagster_event_type = 'ASSET_MATERIALIZATION'"),
            {"r": launched.run_id},
        ).scalar_one()
    engine.dispose()
    assert runs == [(launched.run_id, "SUCCESS")]
    assert materialized == 4  # raw_csv, normalized_contacts, deduped_contacts, contacts

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    (entry,) = history.list_imports(instance, "ws1")
    assert (entry.run_id, entry.origin, entry.import_tag, entry.status) == (launched.run_id, "graphql", "prod", "completed")
    assert (entry.total, entry.imported, entry.updated, entry.skipped, entry.failed) == (251, 248, 0, 2, 1)
    instance.dispose()
