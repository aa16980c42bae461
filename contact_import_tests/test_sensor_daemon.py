"""End to end through a real ``dagster-daemon``: dropped files become exactly one run each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
INTERVAL_SECONDS = 2
FILES = {
    "ws-a/imports/one.csv": b"First Name,Mobile Phone\nAda,+1 415 555 2671\nBob,(202) 456-1111\n",
    "ws-a/imports/two.csv": b"First Name,Mobile Phone\nCy,+1 415 555 0100\n",
    "ws-b/imports/three.csv": b"First Name,Mobile Phone\nDee,+1 415 555 2671\n",
}
EXPECTED_CONTACTS = [
    ("ws-a", "+12024561111"),
    ("ws-a", "+14155550100"),
    ("ws-a", "+14155552671"),
    ("ws-b", "+14155552671"),
]

DAGSTER_YAML = """\
storage:
  sqlite:
    base_dir: {home}/storage
concurrency:
  runs:
    max_concurrent_runs: 3
telemetry:
  enabled: false
"""

WORKSPACE_YAML = """\
load_from:
  - python_module:
      module_name: contact_import_pipeline.definitions
      location_name: contact_import_pipeline
      working_directory: {repo}
"""


def _reset_signals() -> None:
    """Non-interactive shells can hand down ignored SIGINT/SIGTERM; the daemon must obey them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def wait_for(condition: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; daemon log tail:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[dg.DagsterInstance, Path, Path, Path]]:
    """A dagster-daemon on its own DAGSTER_HOME; yields (instance, bucket dir, contacts db, log)."""
    home, bucket, log = tmp_path / "dagster_home", tmp_path / "bucket", tmp_path / "daemon.log"
    home.mkdir()
    bucket.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
    (tmp_path / "workspace.yaml").write_text(WORKSPACE_YAML.format(repo=REPO))
    database = tmp_path / "contacts.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONTACT", "DAGSTER"))},
        "DAGSTER_HOME": str(home),
        "CONTACT_BUCKET_DIR": str(bucket),
        "CONTACTS_DATABASE_URL": f"sqlite:///{database}",
        "CONTACT_SENSOR_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
    }
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_reset_signals,
        )
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance, bucket, database, log
    finally:
        instance.dispose()
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """Stop the daemon and everything it started (code server, run workers): its process group."""
    for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(1)  # let children of the group exit too
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sensor_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "new_files_sensor"})))


def sensor_ticks(instance: dg.DagsterInstance) -> list:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == "new_files_sensor"]
    return [tick for state in states for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)]


@pytest.mark.slow
def test_dropped_files_are_imported_once_each(daemon) -> None:
    instance, bucket, database, log = daemon
    for key, data in FILES.items():
        path = bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def all_finished() -> bool:
        runs = sensor_runs(instance)
        return len(runs) >= len(FILES) and all(run.is_finished for run in runs)

    wait_for(all_finished, 240, "3 finished runs", log)
    runs = sensor_runs(instance)
    assert sorted(run.tags["contact_import/file"] for run in runs) == sorted(FILES)
    assert {run.tags["contact_import/file"]: run.tags["contact_import/workspace"] for run in runs} == {
        key: key.split("/")[0] for key in FILES
    }
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * 3

    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT workspace_id, phone_number FROM contacts")).all()
    engine.dispose()
    assert sorted(map(tuple, rows)) == EXPECTED_CONTACTS

    left = sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*.csv"))
    assert left == sorted(k.replace("/imports/", "/imports/processed/") for k in FILES)

    finished_at = time.time()
    wait_for(
        lambda: sum(t.timestamp > finished_at for t in sensor_ticks(instance)) >= 2,
        10 * INTERVAL_SECONDS + 30,
        "two more sensor ticks",
        log,
    )
    assert len(sensor_runs(instance)) == 3
