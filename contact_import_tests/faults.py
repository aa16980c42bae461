"""Fault-injection helpers: runs in killable subprocesses, held batches, and ledger/DB probes.

A run is started with ``python -m contact_import_tests.faults`` in its own process group, with a
process per step (``launch.run_config(..., in_process=False)``), so a test can ``kill -9`` the run
worker together with its step processes, exactly like a host crash. Batches are held, not slept:
a test transaction inserts (without committing) a phone of a batch, so that batch's insert waits
on it. Tests wait on database state only.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline.defs import launch as launching
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import DATABASE_URL_ENV, normalize_url
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.app.runner import LOCAL_DAGSTER_YAML
from contact_import_pipeline.storage.sources import ALLOW_LOCAL_SOURCES_ENV
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME, Origin

HEADER = ["first_name", "last_name", "email", "phone"]
TEST_TAG = "contact_import_test/token"
INSERT_STEP_PREFIX = "contacts.insert_batch"
# Generous bound for any wait on a busy 2-core machine; a test that needs it has already failed.
WAIT_SECONDS = 150.0
REPO_ROOT = Path(__file__).resolve().parent.parent
# A phone no region accepts: its row fails with invalid_phone.
INVALID_PHONE = "12345"
# A contact a test transaction holds (uncommitted), so the batch inserting it waits.
Held = tuple[str, str]  # (workspace_id, E.164 phone)


def phone_of(i: int) -> str:
    """E.164 form of row ``i``'s phone in ``write_numbered_csv`` (distinct for i < 100,000)."""
    return f"+1212{200 + i // 10000:03d}{i % 10000:04d}"


def write_numbered_csv(path: Path, start: int, count: int, invalid: int = 0) -> Path:
    """A CSV of ``count`` contacts with distinct phones ``phone_of(start) … phone_of(start+count-1)``,
    then ``invalid`` rows whose phone is not a phone number."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(HEADER)
    for i in range(start, start + count):
        writer.writerow([f"First{i}", f"Last{i}", f"user{i}@example.com", f"(212) {200 + i // 10000:03d}-{i % 10000:04d}"])
    for i in range(invalid):
        writer.writerow([f"Bad{i}", "", "", INVALID_PHONE])
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def batch_heads(plan: Sequence[tuple[str, range]], batch_size: int) -> list[Held]:
    """The first (workspace, phone) of each insert batch of a run whose new rows are ``plan``:
    per file in upload order, its workspace and the numbers of the rows it inserts. Batches take
    ``batch_size`` rows in that order, across file boundaries."""
    rows = [(workspace_id, phone_of(i)) for workspace_id, numbers in plan for i in numbers]
    return rows[::batch_size]


def make_home(path: Path, extra_yaml: str = "") -> Path:
    """A Dagster home with the local instance config (SQLite storage, pools, run monitoring)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "dagster.yaml").write_text(LOCAL_DAGSTER_YAML + extra_yaml)
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
    lines = [line for line in out.splitlines() if line.startswith("{\"run_id\"")]
    assert proc.returncode == 0 and lines, f"run process exited {proc.returncode}:\n{out[-4000:]}"
    return json.loads(lines[-1])


def kill_group(proc: subprocess.Popen[str]) -> None:
    """``kill -9`` the run worker and every step process it started (one process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    wait_until(lambda: not _group_alive(proc.pid), "step processes of the killed run to exit")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


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
        try:
            tx.rollback()
        except sa.exc.OperationalError:
            pass  # the server ended the session (terminated, restarted or stopped): nothing is left to roll back
        conn.close()
        db.dispose()


def terminate_held_inserts(db: sa.Engine) -> int:
    """``pg_terminate_backend`` every loader connection waiting on a held phone; returns how many."""
    with db.connect() as conn:
        return len(conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) {_HELD_LOADERS}")).all())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port, so a test may restart it without touching others."""

    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, data, port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        # The server's output must go to a file: pg_ctl's own pipes would be held open by the server.
        self.log = data / "server.log"

    def _ctl(self, *args: str) -> None:
        _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.log), "start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated and open transactions roll back."""
        self._ctl("-m", "fast", "-l", str(self.log), "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


def _as_postgres(argv: list[str]) -> None:
    """Run a PostgreSQL server tool; as root it must run as the postgres OS user."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """initdb + start a cluster in a temporary folder; stopped and removed afterwards.

    Raises ``ClusterUnavailable`` with the reason when this machine cannot create one.
    """
    bindir = _pg_bindir()
    if bindir is None:
        raise ClusterUnavailable("no PostgreSQL server binaries (initdb) found")
    root = Path(tempfile.mkdtemp(prefix="contact-import-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        try:
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
        except (OSError, subprocess.CalledProcessError, LookupError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            raise ClusterUnavailable(f"initdb failed: {detail.strip()[:300]}") from exc
        cluster = PrivateCluster(bindir, data, free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class ClusterUnavailable(RuntimeError):
    """A private PostgreSQL cluster cannot be created on this machine."""


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of one test alone (the shared server must never be stopped or restarted).
    Fails under CI=true when it cannot be created; skips elsewhere."""
    try:
        with private_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot create a private PostgreSQL cluster: {exc}")
        pytest.skip(f"cannot create a private PostgreSQL cluster: {exc}")


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
        dg.build_reconstructable_job("contact_import_pipeline.defs.definitions", IMPORT_JOB_NAME),
        instance=instance,
        run_config=config,
        tags=launching.run_tags(keys, Origin.CLI) | {TEST_TAG: spec["token"]},
        reexecution_options=options,
    )
    print(json.dumps({"run_id": result.run_id, "success": result.success}), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1])
