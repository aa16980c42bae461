"""End to end through a real ``dagster-daemon``: files dropped at once are packed into few runs,
each file imported exactly once, and a file that fails as a file fails alone."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.keys import parse_import_key
from contact_import_pipeline.settings import MAX_FILES_PER_RUN_ENV, SENSOR_INTERVAL_ENV
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_pipeline.vocabulary import (
    FILE_TAG_PREFIX,
    FILES_TAG,
    ORIGIN_TAG,
    SENSOR_NAME_TAG,
    WORKSPACE_TAG_PREFIX,
    default_import_tag,
    file_tag,
    workspace_tag,
)
from contact_import_tests.helpers import REPO_ROOT, process_group, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.servers]

INTERVAL_SECONDS = 2
FILES_PER_RUN = 3  # the sensor's cap, lowered so that seven files make several runs
HEADER = b"First Name,Mobile Phone\n"
BINARY_KEY = "ws-b/imports/binary.csv"
# In upload order: (key, content, (total, imported, skipped, failed)); no phone repeats across the
# files of one workspace, so each file's counts do not depend on which files share its run.
FILES: list[tuple[str, bytes, tuple[int, int, int, int]]] = [
    ("ws-a/imports/one.csv", HEADER + b"Ada,+1 415 555 2671\nBob,(202) 456-1111\n", (2, 2, 0, 0)),
    (BINARY_KEY, bytes(range(256)) * 8, (0, 0, 0, 0)),  # a spreadsheet or archive renamed .csv
    ("ws-a/imports/two.csv", HEADER + b"Cy,+1 415 555 0100\nCy again,415-555-0100\n", (2, 1, 1, 0)),
    ("ws-b/imports/three.csv", HEADER + b"Dee,+1 415 555 2671\nEve,12345\n", (2, 1, 0, 1)),
    ("ws-c/imports/four.csv", HEADER + b"Fay,+1 (201) 200-0001\n", (1, 1, 0, 0)),
    ("ws-a/imports/five.csv", HEADER + b"Gus,+1 (201) 200-0002\n", (1, 1, 0, 0)),
    ("ws-c/imports/six.csv", HEADER + b"Hal,+1 (201) 200-0003\n", (1, 1, 0, 0)),
]
KEYS = [key for key, _, _ in FILES]
# Each workspace's files stay in upload order in one stretch (at most FILES_PER_RUN), and
# stretches share a run up to that cap: ws-a's three files, ws-b's two, ws-c's two.
EXPECTED_RUNS = [[KEYS[0], KEYS[2], KEYS[5]], [KEYS[1], KEYS[3]], [KEYS[4], KEYS[6]]]
EXPECTED_CONTACTS = {
    "ws-a": ["+12024561111", "+12012000002", "+14155550100", "+14155552671"],
    "ws-b": ["+14155552671"],
    "ws-c": ["+12012000001", "+12012000003"],
}
BINARY_ERROR = f"{BINARY_KEY}: is a binary file, not CSV text; export the contacts as CSV and upload that"

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
      module_name: contact_import_pipeline.defs.definitions
      location_name: contact_import_pipeline
      working_directory: {repo}
"""


def wait_for(condition: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    """``wait_until`` that shows the daemon's log tail when it times out."""
    try:
        wait_until(condition, what, timeout=seconds)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; daemon log tail:\n{log.read_text()[-4000:]}") from None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[dg.DagsterInstance, Path, Path, Path]]:
    """A dagster-daemon on its own DAGSTER_HOME; yields (instance, bucket dir, contacts db, log).

    The bucket folder does not exist yet: ``drop`` creates it with every file in it at once.
    """
    home, bucket, log = tmp_path / "dagster_home", tmp_path / "bucket", tmp_path / "daemon.log"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(home=home))
    (tmp_path / "workspace.yaml").write_text(WORKSPACE_YAML.format(repo=REPO_ROOT))
    database = tmp_path / "contacts.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CONTACT", "DAGSTER"))},
        "DAGSTER_HOME": str(home),
        "CONTACT_BUCKET_DIR": str(bucket),
        "CONTACTS_DATABASE_URL": f"sqlite:///{database}",
        SENSOR_INTERVAL_ENV: str(INTERVAL_SECONDS),
        MAX_FILES_PER_RUN_ENV: str(FILES_PER_RUN),
    }
    command = [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")]
    # The instance's SQLite storage is created here, before the daemon and its code server start: three
    # processes creating it at once can leave its schema table with two heads (alembic refuses it).
    instance = dg.DagsterInstance.from_config(str(home))
    instance.get_runs(limit=1)
    instance.all_instigator_state()
    with process_group(command, env=env, log=log, cwd=tmp_path):
        try:
            yield instance, bucket, database, log
        finally:
            instance.dispose()


def drop(bucket: Path, files: list[tuple[str, bytes, tuple[int, int, int, int]]], first_upload: int) -> None:
    """Create the bucket folder holding ``files`` in one rename, so that one listing sees them all.

    File ``i`` is dated ``first_upload + i`` seconds: the upload order, and the second its default
    import tag names.
    """
    staging = bucket.with_name(bucket.name + ".staging")
    for i, (key, data, _) in enumerate(files):
        path = staging / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp = (first_upload + i) * 1_000_000_000
        os.utime(path, ns=(stamp, stamp))
    staging.rename(bucket)


def sensor_runs(instance: dg.DagsterInstance, tags: dict[str, str] | None = None) -> list[dg.DagsterRun]:
    """Runs the new-file sensor requested (and that carry ``tags``), oldest first."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: "new_files_sensor", **(tags or {})}))
    return sorted(runs, key=lambda run: min(KEYS.index(key) for key in run_files(run)))


def run_files(run: dg.DagsterRun) -> list[str]:
    """The file keys in the run's config, in the run's upload order."""
    return [entry["key"] for entry in run.run_config["ops"]["raw_csv"]["config"]["files"]]


def sensor_ticks(instance: dg.DagsterInstance) -> list:
    states = [s for s in instance.all_instigator_state() if s.instigator_name == "new_files_sensor"]
    return [tick for state in states for tick in instance.get_ticks(state.instigator_origin_id, state.selector_id)]


def contacts_metadata(instance: dg.DagsterInstance, run_id: str) -> dict:
    """The run's ``contacts`` materialization metadata, as plain values."""
    (record,) = [
        r
        for r in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if r.asset_materialization.asset_key == dg.AssetKey("contacts")
    ]
    return {name: value.value for name, value in record.asset_materialization.metadata.items()}


def test_dropped_files_are_packed_into_few_runs_and_imported_once_each(daemon) -> None:
    instance, bucket, database, log = daemon
    first_upload = int(time.time()) - 60
    drop(bucket, FILES, first_upload)

    def all_finished() -> bool:
        runs = sensor_runs(instance)
        return sum(len(run_files(run)) for run in runs) >= len(FILES) and all(run.is_finished for run in runs)

    wait_for(all_finished, 300, f"runs carrying all {len(FILES)} files to finish", log)
    runs = sensor_runs(instance)
    assert [run_files(run) for run in runs] == EXPECTED_RUNS
    assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS] * len(EXPECTED_RUNS), log.read_text()[-4000:]
    for run in runs:  # each run's tags list its files and workspaces, and nothing else
        files = run_files(run)
        listed = {k: v for k, v in run.tags.items() if k.startswith((FILE_TAG_PREFIX, WORKSPACE_TAG_PREFIX))}
        assert listed == {file_tag(k): k for k in files} | {
            workspace_tag(k.split("/")[0]): k.split("/")[0] for k in files
        }
        assert (run.tags[FILES_TAG], run.tags[ORIGIN_TAG]) == (str(len(files)), "sensor")

    # The runs list filters by workspace and by file.
    by_workspace = {
        ws: [run.run_id for run in sensor_runs(instance, {workspace_tag(ws): ws})] for ws in EXPECTED_CONTACTS
    }
    assert by_workspace == {"ws-a": [runs[0].run_id], "ws-b": [runs[1].run_id], "ws-c": [runs[2].run_id]}
    by_file = {key: [run.run_id for run in sensor_runs(instance, {file_tag(key): key})] for key in KEYS}
    assert by_file == {key: [run.run_id] for run in runs for key in run_files(run)}

    # The ledger: one entry per file, under the run that carried it, with that file's own counts.
    store = ContactsStore(f"sqlite:///{database}")
    entries = {e.file: e for ws in EXPECTED_CONTACTS for e in Ledger(store).entries(workspace_id=ws)}
    assert sorted(entries) == sorted(KEYS)
    run_of = {key: run.run_id for run in runs for key in run_files(run)}
    assert {key: (e.run_id, e.root_run_id, e.origin) for key, e in entries.items()} == {
        key: (run_of[key], run_of[key], "sensor") for key in KEYS
    }
    assert {key: (e.status, e.error, (e.total, e.imported, e.skipped, e.failed)) for key, e in entries.items()} == {
        key: ("failed", BINARY_ERROR, counts) if key == BINARY_KEY else ("completed", None, counts)
        for key, _, counts in FILES
    }
    # A default import tag names the file's upload second (each file of a workspace has its own).
    assert {key: e.import_tag for key, e in entries.items()} == {
        key: default_import_tag(datetime.fromtimestamp(first_upload + i, UTC)) for i, key in enumerate(KEYS)
    }
    assert {ws: sorted(c["phone_number"] for c in store.query_contacts(ws)) for ws in EXPECTED_CONTACTS} == {
        ws: sorted(phones) for ws, phones in EXPECTED_CONTACTS.items()
    }
    store.dispose()

    # The binary file failed alone: its run's other files completed and the run succeeded.
    metadata = contacts_metadata(instance, runs[1].run_id)
    names = ("imports", "completed_imports", "failed_imports", "total", "imported", "skipped", "failed")
    assert {name: metadata[name] for name in names} == {
        "imports": 2,
        "completed_imports": 1,
        "failed_imports": 1,
        "total": 2,
        "imported": 1,
        "skipped": 0,
        "failed": 1,
    }
    assert [(r.data["file"], r.data["status"], r.data["error"]) for r in metadata["imports_table"].records] == [
        (BINARY_KEY, "failed", BINARY_ERROR),
        (KEYS[3], "completed", ""),
    ]

    # Completed sources are archived (rejects written beside them); the failed one stays where it was.
    left = sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*") if p.is_file())
    archived = [parse_import_key(key).processed_key for key in KEYS if key != BINARY_KEY]
    rejects = [parse_import_key(key).rejects_key for key in ("ws-a/imports/two.csv", "ws-b/imports/three.csv")]
    assert left == sorted([*archived, *rejects, BINARY_KEY])

    finished_at = time.time()
    wait_for(
        lambda: sum(t.timestamp > finished_at for t in sensor_ticks(instance)) >= 2,
        10 * INTERVAL_SECONDS + 30,
        "two more sensor ticks",
        log,
    )
    assert len(sensor_runs(instance)) == len(EXPECTED_RUNS)
