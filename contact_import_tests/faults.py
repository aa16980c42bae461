"""Fault-injection helpers: runs in killable subprocesses, held batches, and ledger/DB probes.

A run is started with ``python -m contact_import_tests.faults`` in its own process group, with a
process per step (``launch.run_config(..., in_process=False)``), so a test can ``kill -9`` the run
worker together with its step processes, exactly like a host crash. Batches are held, not slept:
a test transaction inserts (without committing) a phone of a batch, so that batch's insert waits
on it. Tests wait on database state only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml

from contact_import_pipeline.app.runner import LOCAL_DAGSTER_YAML
from contact_import_pipeline.defs import launch as launching
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.storage.schema import DATABASE_URL_ENV, normalize_url
from contact_import_pipeline.storage.sources import ALLOW_LOCAL_SOURCES_ENV
from contact_import_pipeline.vocabulary import Origin
from contact_import_tests.helpers import (
    REPO_ROOT,
    WAIT_SECONDS,
    phone_of,
    reconstructable_job,
    signal_group,
    wait_until,
)

TEST_TAG = "contact_import_test/token"
INSERT_STEP_PREFIX = "contacts.insert_batch"
# A contact a test transaction holds (uncommitted), so the batch inserting it waits.
Held = tuple[str, str]  # (workspace_id, E.164 phone)


def batch_heads(plan: Sequence[tuple[str, range]], batch_size: int) -> list[Held]:
    """The first (workspace, phone) of each insert batch of a run whose new rows are ``plan``:
    per file in upload order, its workspace and the numbers of the rows it inserts. Batches take
    ``batch_size`` rows in that order, across file boundaries."""
    rows = [(workspace_id, phone_of(i)) for workspace_id, numbers in plan for i in numbers]
    return rows[::batch_size]


def make_home(path: Path, **overrides: dict[str, Any]) -> Path:
    """A Dagster home with the local instance config (SQLite storage, pools, run monitoring), each
    section given in ``overrides`` updated with its settings (e.g. ``run_monitoring={...}``)."""
    config = yaml.safe_load(LOCAL_DAGSTER_YAML)
    for section, settings in overrides.items():
        config[section] = {**config.get(section, {}), **settings}
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def file_entry(source: Path, workspace_id: str, import_tag: str = "") -> dict[str, Any]:
    """A local file's entry in a run's ``files``, keyed ``<workspace>/imports/<file name>``
    (tagged ``fault-<file stem>`` unless given)."""
    return {
        "key": f"{workspace_id}/imports/{source.name}",
        "source": str(source),
        "workspace_id": workspace_id,
        "import_tag": import_tag or f"fault-{source.stem}",
    }


def launch(
    home: Path,
    database_url: str,
    token: str,
    files: Sequence[dict[str, Any]] = (),
    batch_size: int | None = None,
    reexecute: tuple[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start one run of ``files`` with a process per step, or a re-execution ``(parent_run_id,
    "from_failure"|"all_steps")`` of an earlier one (same files and config), in a new process group."""
    config = launching.run_config(files, in_process=False, batch_size=batch_size) if files else None
    spec = {"run_config": config, "token": token, "reexecute": reexecute}
    env = dict(os.environ, DAGSTER_HOME=str(home), **{DATABASE_URL_ENV: database_url, ALLOW_LOCAL_SOURCES_ENV: "1"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "contact_import_tests.faults", json.dumps(spec)],
        env=env,
        cwd=str(home.parent),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = WAIT_SECONDS) -> dict[str, Any]:
    """Wait for a launched run and return its ``{"run_id", "success"}`` line (output shown on failure)."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        raise AssertionError(f"run process did not finish in {timeout}s:\n{out[-4000:]}") from None
    lines = [line for line in out.splitlines() if line.startswith('{"run_id"')]
    assert proc.returncode == 0 and lines, f"run process exited {proc.returncode}:\n{out[-4000:]}"
    return json.loads(lines[-1])


def kill_group(proc: subprocess.Popen[str]) -> None:
    """``kill -9`` the run worker and every step process it started (one process group)."""
    signal_group(proc, signal.SIGKILL)
    proc.wait()
    wait_until(lambda: not _group_alive(proc.pid), "step processes of the killed run to exit")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def engine(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), pool_size=2)


def landed_batches(db: sa.Engine) -> int:
    """Batches recorded as landed in this database, over every run family (a batch holding rows
    of several imports has one row per import; import ids are ``<root run id>:<key>``)."""
    with db.connect() as conn:
        return conn.execute(
            sa.text("SELECT count(DISTINCT (split_part(import_id, ':', 1), batch_index)) FROM contact_import_batches")
        ).scalar_one()


def ledger(url: str, root_run_id: str) -> dict[str, LedgerEntry]:
    """The run family's imports in the ledger, by file key."""
    store = ContactsStore(url)
    try:
        return {entry.file: entry for entry in Ledger(store).entries(root_run_id=root_run_id)}
    finally:
        store.dispose()


def outcome(entry: LedgerEntry) -> dict[str, Any]:
    """What an import reports: its status, counts and the reasons of rows not imported."""
    return {
        "status": entry.status,
        "total": entry.total,
        "imported": entry.imported,
        "updated": entry.updated,
        "skipped": entry.skipped,
        "failed": entry.failed,
        "skipped_by_reason": entry.skipped_by_reason,
        "failed_by_reason": entry.failed_by_reason,
    }


def completed(total: int, imported: int, skipped_existing: int = 0, invalid: int = 0) -> dict[str, Any]:
    """``outcome`` of a completed import that skipped only phones the workspace (or an earlier file
    of the run) had and failed only invalid phones."""
    return {
        "status": "completed",
        "total": total,
        "imported": imported,
        "updated": 0,
        "skipped": skipped_existing,
        "failed": invalid,
        "skipped_by_reason": {"duplicate_existing": skipped_existing} if skipped_existing else {},
        "failed_by_reason": {"invalid_phone": invalid} if invalid else {},
    }


# Loader connections of this database blocked on a row or transaction lock: a batch's COPY into
# contacts, or its staged INSERT (the body of a WITH statement).
_HELD_LOADERS = (
    "FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
    "AND (query ILIKE '%INSERT INTO contacts%' OR query ILIKE 'COPY contacts%')"
)


def waiting_on_locks(db: sa.Engine) -> int:
    """Backends of this database blocked on a row or transaction lock (held batches)."""
    with db.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) {_HELD_LOADERS}")).scalar_one()


def contact_counts(db: sa.Engine, workspace_id: str) -> tuple[int, int]:
    """(rows, distinct phones) of a workspace: equal means no duplicates."""
    with db.connect() as conn:
        return tuple(
            conn.execute(
                sa.text("SELECT count(*), count(DISTINCT phone_number) FROM contacts WHERE workspace_id = :ws"),
                {"ws": workspace_id},
            ).one()
        )


@contextmanager
def hold_phones(url: str, held: Sequence[Held]) -> Iterator[None]:
    """Insert ``(workspace, phone)`` pairs in an open transaction, so any batch containing one waits
    until we roll back."""
    db = engine(url)
    conn = db.connect()
    tx = conn.begin()
    try:
        conn.execute(
            sa.text(
                "INSERT INTO contacts (workspace_id, phone_number, firstname, lastname) VALUES (:ws, :p, 'hold', 'hold')"
            ),
            [{"ws": workspace_id, "p": phone} for workspace_id, phone in held],
        )
        yield
    finally:
        # The server may have ended the session (terminated, restarted or stopped): nothing is left to roll back.
        with contextlib.suppress(sa.exc.OperationalError):
            tx.rollback()
        conn.close()
        db.dispose()


def terminate_held_inserts(db: sa.Engine) -> int:
    """``pg_terminate_backend`` every loader connection waiting on a held phone; returns how many."""
    with db.connect() as conn:
        return len(conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) {_HELD_LOADERS}")).all())


def runs_with_token(instance: dg.DagsterInstance, token: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={TEST_TAG: token})))


def step_events(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return [e for e in instance.all_logs(run_id) if e.is_dagster_event]


def count_events(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType, prefix: str = "") -> int:
    return sum(
        1
        for e in step_events(instance, run_id)
        if e.dagster_event_type == event_type and (e.step_key or "").startswith(prefix)
    )


def step_succeeded(instance: dg.DagsterInstance, run_id: str, step_key: str) -> bool:
    return any(
        e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS and e.step_key == step_key
        for e in step_events(instance, run_id)
    )


def max_in_flight(instance: dg.DagsterInstance, run_ids: Sequence[str], prefix: str) -> int:
    """Most steps starting with ``prefix`` running at once across runs, from start and end events."""
    ends = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_UP_FOR_RETRY}
    changes = []
    for run_id in run_ids:
        for e in step_events(instance, run_id):
            if not (e.step_key or "").startswith(prefix):
                continue
            if e.dagster_event_type == dg.DagsterEventType.STEP_START:
                changes.append((e.timestamp, 1))
            elif e.dagster_event_type in ends:
                changes.append((e.timestamp, -1))
    running = peak = 0
    for _, change in sorted(changes):  # at equal times an end (-1) sorts before a start
        running += change
        peak = max(peak, running)
    return peak


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every step-failure description and error message of a run, joined (for asserting a reason)."""
    parts = []
    for e in step_events(instance, run_id):
        if e.dagster_event_type == dg.DagsterEventType.STEP_FAILURE:
            data = e.dagster_event.step_failure_data
            if data.user_failure_data is not None and data.user_failure_data.description:
                parts.append(data.user_failure_data.description)
            if data.error is not None:
                parts.append(data.error.to_string())
    return "\n".join(parts)


def _main(spec_json: str) -> None:
    """Subprocess entry point: run (or re-execute) the job with the CLI's tags, print the outcome."""
    spec = json.loads(spec_json)
    instance = dg.DagsterInstance.get()
    config = spec["run_config"]
    options = None
    if spec["reexecute"]:
        parent, strategy = spec["reexecute"]
        config = instance.get_run_by_id(parent).run_config
        options = (
            dg.ReexecutionOptions.from_failure(parent, instance)
            if strategy == "from_failure"
            else dg.ReexecutionOptions(parent_run_id=parent, step_selection=[])
        )
    keys = [entry["key"] for entry in config["ops"]["raw_csv"]["config"]["files"]]
    result = dg.execute_job(
        reconstructable_job(),
        instance=instance,
        run_config=config,
        tags=launching.run_tags(keys, Origin.CLI) | {TEST_TAG: spec["token"]},
        reexecution_options=options,
    )
    print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
