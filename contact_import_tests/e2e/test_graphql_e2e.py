"""End to end over GraphQL: a real dagster-webserver and dagster-daemon on the repo's dagster.yaml
(PostgreSQL instance storage), contacts in PostgreSQL, uploads in a local bucket folder.

The 5,000-row import is triggered by a caller process that is killed part-way; the run finishes
anyway, progress read every 0.3 s only moves forward, and it ends equal to the materialization.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contact_import_pipeline.app import cli
from contact_import_pipeline.app.graphql import DagsterApi, DagsterConfigInvalid, RunState
from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.config import FileImport, ImportRunConfig
from contact_import_pipeline.settings import STEP_PROCESSES_BYTES_ENV
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.vocabulary import MAX_RETRIES_TAG, Origin, RunStatus, file_tag
from contact_import_tests.helpers import create_pg_database, dagster_pg_env, drop_pg_database, require_postgres
from contact_import_tests.servers import DagsterServers, dagster_servers, production_home

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.servers, pytest.mark.xdist_group("graphql_e2e")]

WORKSPACE = "e2e"
ROWS, DUPLICATES, INVALID = 5000, 60, 40
UNIQUE = ROWS - DUPLICATES - INVALID
BATCH_SIZE = 500
POLL_SECONDS = 0.3
RUN_TIMEOUT_SECONDS = 420.0
CLI = [sys.executable, "-m", "contact_import_pipeline.app.cli"]


def contacts_csv(path: Path) -> Path:
    """5,000 rows: 4,900 new phones, 60 repeats of earlier phones (other formatting), 40 invalid."""
    lines = ["First Name,Last Name,Mobile Phone,E-mail Address"]
    for i in range(UNIQUE):
        lines.append(f"F{i},L{i},+1 (201) {200 + i // 10000:03d}-{i % 10000:04d},p{i}@example.com")
        if i % 81 == 0 and i // 81 < DUPLICATES:
            lines.append(f"Dup{i},L{i},201.{200 + i // 10000:03d}.{i % 10000:04d},")
        if i % 122 == 0 and i // 122 < INVALID:
            lines.append(f"Bad{i},L{i},12345,")
    assert len(lines) == ROWS + 1
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DagsterServers, str]]:
    require_postgres()
    root = tmp_path_factory.mktemp("graphql_e2e")
    instance_url, contacts_url = create_pg_database(), create_pg_database()
    home = production_home(root)
    env = {
        **dagster_pg_env(instance_url),
        "CONTACTS_DATABASE_URL": contacts_url,
        "CONTACT_BUCKET_DIR": str(root / "bucket"),
        "CONTACT_SENSOR_INTERVAL_SECONDS": "2",  # the new-file sensor sees every upload quickly
    }
    try:
        with dagster_servers(home, env, root / "logs") as servers:
            yield servers, contacts_url
    finally:
        drop_pg_database(instance_url)
        drop_pg_database(contacts_url)


@pytest.fixture
def env(stack: tuple[DagsterServers, str], monkeypatch: pytest.MonkeyPatch) -> DagsterServers:
    """This process talks to the stack's webserver and bucket, like a caller on the same host."""
    servers, contacts_url = stack
    monkeypatch.setenv("DAGSTER_URL", servers.url)
    monkeypatch.setenv("CONTACT_BUCKET_DIR", servers.env["CONTACT_BUCKET_DIR"])
    monkeypatch.setenv("CONTACTS_DATABASE_URL", contacts_url)  # `contact-import status` reads the ledger there
    return servers


def run_ids(servers: DagsterServers) -> list[str]:
    runs = servers.graphql("{ runsOrError { ... on Runs { results { runId } } } }")["runsOrError"]["results"]
    return sorted(run["runId"] for run in runs)


def runs_for_file(servers: DagsterServers, key: str) -> list[str]:
    """Runs carrying the file ``key``, as the runs list filters them by its file tag."""
    query = """query($k: String!, $v: String!) { runsOrError(filter: {tags: [{key: $k, value: $v}]}) {
      ... on Runs { results { runId } } } }"""
    return [r["runId"] for r in servers.graphql(query, {"k": file_tag(key), "v": key})["runsOrError"]["results"]]


def wait_finished(api: DagsterApi, run_id: str, samples: list[RunState] | None = None) -> RunState:
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        state = api.read_run(run_id)
        if samples is not None:
            samples.append(state)
        if state.finished:
            return state
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"run {run_id} did not finish in {RUN_TIMEOUT_SECONDS:.0f}s; last: {state}")


def assert_monotonic(samples: list[RunState]) -> None:
    """Counts never decrease, status only moves forward, totals never change once known (a run
    starts its progress at zero while initializing; the totals are known once it processes)."""
    rank = {RunStatus.INITIALIZING: 0, RunStatus.PROCESSING: 1, RunStatus.COMPLETED: 2, RunStatus.FAILED: 2}
    for before, after in itertools.pairwise(samples):
        b, a = before.progress, after.progress
        for name in ("processed", "imported", "updated", "skipped", "failed", "current_batch"):
            assert a.get(name, 0) >= b.get(name, 0), f"{name} went back: {b} -> {a}"
        for name in ("total", "total_batches"):
            if b.get(name):
                assert a.get(name) == b[name], f"{name} changed: {b} -> {a}"
        assert rank.get(a.get("status"), -1) >= rank.get(b.get("status"), -1), f"status went back: {b} -> {a}"


def test_5000_rows_through_graphql_outlive_the_caller_with_monotonic_progress(
    env: DagsterServers, stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    servers, contacts_url = stack
    api = DagsterApi(servers.url)
    # Only for the caller: the file counts as large, so its run has a process per step and inserts 5
    # batches at once, racing to report progress (a one-process run inserts them one by one, at once).
    monkeypatch.setenv(STEP_PROCESSES_BYTES_ENV, "1")
    source = contacts_csv(tmp_path / "fair-5000.csv")
    key = f"{WORKSPACE}/imports/fair-5000.csv"
    # The caller triggers, then follows the progress, like a web backend streaming to a browser.
    caller_code = (
        "import sys; from contact_import_pipeline.app import cli; from contact_import_pipeline.app.trigger import trigger_import\n"
        f"r = trigger_import([{str(source)!r}], {WORKSPACE!r}, tag='fair', batch_size={BATCH_SIZE})\n"
        "print(r.run_id, flush=True)\n"
        "sys.exit(cli.main(['status', r.run_id, '--follow']))\n"
    )
    started = time.monotonic()
    caller = subprocess.Popen(
        [sys.executable, "-c", caller_code],
        cwd=tmp_path,
        env={**os.environ},
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    run_id = caller.stdout.readline().strip()
    assert run_id, f"caller printed no run id (exit {caller.wait()})"

    samples: list[RunState] = []
    killed_at = None
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        state = api.read_run(run_id)
        samples.append(state)
        if killed_at is None and state.progress.get("current_batch", 0) >= 1:
            os.killpg(caller.pid, signal.SIGKILL)  # the caller goes away part-way: the run must not care
            caller.wait()
            killed_at = state.progress
        if state.finished:
            break
        time.sleep(POLL_SECONDS)
    seconds = time.monotonic() - started
    final = samples[-1]
    print(
        f"\nrun {run_id}: {final.status} in {seconds:.1f}s, {len(samples)} progress samples, caller killed at batch {killed_at and killed_at.get('current_batch')}, processed {killed_at and killed_at.get('processed')}"
    )

    assert final.status == "SUCCESS", final
    assert killed_at is not None and killed_at["processed"] < ROWS, "the caller was not killed part-way"
    assert_monotonic(samples)
    mid_run = [s.progress for s in samples if 0 < s.progress.get("processed", 0) < ROWS]
    assert mid_run, "no progress was seen while the run was running"
    expected = {
        "status": "completed",
        "total": ROWS,
        "processed": ROWS,
        "imported": UNIQUE,
        "updated": 0,
        "skipped": DUPLICATES,
        "failed": INVALID,
        "current_batch": 10,
        "total_batches": 10,
    }
    assert {name: final.progress.get(name) for name in expected} == expected
    assert [e["reason"] for e in final.progress["errors"]] == ["invalid_phone"] * 10

    counts = ("total", "processed", "imported", "updated", "skipped", "failed")
    metadata = api.materialization_metadata(run_id)
    assert {name: metadata[name] for name in counts} == {name: final.progress[name] for name in counts}
    assert {
        name: metadata[name] for name in ("status", "batches", "imports", "completed_imports", "failed_imports")
    } == {
        "status": "completed",
        "batches": final.progress["total_batches"],
        "imports": 1,
        "completed_imports": 1,
        "failed_imports": 0,
    }
    assert json.loads(metadata["skipped_by_reason"]) == {"duplicate_in_file": DUPLICATES}
    assert json.loads(metadata["failed_by_reason"]) == {"invalid_phone": INVALID}
    assert json.loads(metadata["errors"]) == final.progress["errors"]
    assert metadata["summary"].splitlines()[0] == (
        f"**{UNIQUE}** imported, **0** updated, **{DUPLICATES}** skipped (duplicates), **{INVALID}** failed of "
        f"**{ROWS}** rows in 10 batches, from **1** of 1 files (0 failed as files)."
    )
    assert metadata["imports_table"] == [
        {
            "file": key,
            "workspace": WORKSPACE,
            "tag": "fair",
            "status": "completed",
            "total": ROWS,
            "imported": UNIQUE,
            "updated": 0,
            "skipped": DUPLICATES,
            "failed": INVALID,
            "error": "",
        }
    ]
    assert ContactsStore(contacts_url).count_contacts(WORKSPACE) == UNIQUE
    assert runs_for_file(servers, key) == [run_id]  # the new-file sensor did not import the upload again

    # Reconnect: a fresh reader gets the final state, the import from the ledger and exit code 0.
    reader = subprocess.run(
        [*CLI, "status", run_id, "--json"],
        env={**os.environ},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reader.returncode == 0, reader.stderr
    out = json.loads(reader.stdout)
    assert out["progress"] == final.progress
    (entry,) = out["imports"]
    assert {
        name: entry[name] for name in ("file", "workspace_id", "import_tag", "status", "run_id", "origin", *counts)
    } == {
        "file": key,
        "workspace_id": WORKSPACE,
        "import_tag": "fair",
        "status": "completed",
        "run_id": run_id,
        "origin": "graphql",
        **{name: final.progress[name] for name in counts},
    }


def test_failed_run_ends_failed_with_the_reason(env: DagsterServers, tmp_path: Path) -> None:
    api = DagsterApi(env.url)
    (tmp_path / "no-phone.csv").write_text("Name,E-mail\nAda,ada@example.com\n")
    trigger = subprocess.run(
        [*CLI, "trigger", "no-phone.csv", "--workspace", WORKSPACE, "--json"],
        env={**os.environ},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert trigger.returncode == 0, trigger.stderr
    run_id = json.loads(trigger.stdout)["run_id"]
    final = wait_finished(api, run_id)
    reason = f"{WORKSPACE}/imports/no-phone.csv: no phone column found"
    assert final.status == "FAILURE"
    assert final.progress["status"] == "failed" and final.progress["error"].startswith(reason)
    assert final.tags[MAX_RETRIES_TAG] == "0"  # the same file would fail the same way: no automatic retry

    status = subprocess.run(
        [*CLI, "status", run_id, "--json"],
        env={**os.environ},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 1
    out = json.loads(status.stdout)
    assert (out["run_status"], out["error"]) == ("FAILURE", final.progress["error"])
    (entry,) = out["imports"]
    assert (entry["file"], entry["status"], entry["total"], entry["imported"]) == (
        f"{WORKSPACE}/imports/no-phone.csv",
        "failed",
        0,
        0,
    )
    assert entry["error"] == final.progress["error"]  # a run of one file fails with that file's reason


def test_bad_trigger_input_launches_nothing(
    env: DagsterServers, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ok.csv").write_text("Name,Phone\nAda,+1 202 456 1414\n")
    before = run_ids(env)
    assert cli.main(["trigger", "ok.csv", "--workspace", ""]) == 2
    assert cli.main(["trigger", "missing.csv", "--workspace", WORKSPACE]) == 2
    assert cli.main(["trigger", f"{WORKSPACE}/imports/never-uploaded.csv", "--workspace", WORKSPACE]) == 2
    assert cli.main(["trigger", "ok.csv", "--workspace", WORKSPACE, "--dagster-url", "http://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "contact-import: workspace id '' is invalid: use 1-64 letters, digits, '-' or '_', starting with a letter or digit",
        "contact-import: missing.csv: file not found (give a local CSV file, an http(s) URL or a bucket key)",
        f"contact-import: {WORKSPACE}/imports/never-uploaded.csv: not found in the bucket "
        f"({env.env['CONTACT_BUCKET_DIR']}/{WORKSPACE}/imports/never-uploaded.csv)",
        "contact-import: cannot reach the Dagster webserver at http://127.0.0.1:9 (ConnectionError); "
        "is it running? Set --dagster-url or $DAGSTER_URL",
    ]
    assert run_ids(env) == before
    assert not Path(env.env["CONTACT_BUCKET_DIR"], WORKSPACE, "imports", "ok.csv").exists()


def test_config_error_from_dagster_is_readable(env: DagsterServers) -> None:
    api = DagsterApi(env.url)
    key = f"{WORKSPACE}/imports/typed.csv"
    config = launch.run_config([{"key": key}], in_process=True)
    config["ops"]["raw_csv"]["config"]["batch_size"] = "500"  # text where Dagster wants an Int
    before = run_ids(env)
    with pytest.raises(DagsterConfigInvalid) as caught:
        api.launch_import(config, launch.run_tags([key], Origin.GRAPHQL))
    assert str(caught.value) == (
        "Dagster refused the run config: Invalid scalar at path root:ops:raw_csv:config:batch_size. "
        'Value "500" of type "<class \'str\'>" is not valid for expected type "Int".'
    )
    assert run_ids(env) == before


def test_launchpad_documents_every_option(env: DagsterServers) -> None:
    query = """{ runConfigSchemaOrError(selector: {repositoryLocationName: "contact_import_pipeline",
      repositoryName: "__repository__", pipelineName: "import_job"}) { ... on RunConfigSchema {
      allConfigTypes { ... on CompositeConfigType { fields { name description isRequired defaultValueAsJson } } } } } }"""
    types = env.graphql(query)["runConfigSchemaOrError"]["allConfigTypes"]

    def fields_of(config: type) -> dict[str, dict]:
        names = set(config.model_fields)
        (fields,) = [t["fields"] for t in types if t.get("fields") and {f["name"] for f in t["fields"]} == names]
        return {f["name"]: f for f in fields}

    files = fields_of(FileImport)
    assert all(f["description"] and not f["isRequired"] for f in files.values())
    assert (files["on_duplicate"]["defaultValueAsJson"], files["cleanup"]["defaultValueAsJson"]) == ('""', '""')
    run = fields_of(ImportRunConfig)
    assert all(f["description"] for f in run.values())
    assert {name: (f["isRequired"], f["defaultValueAsJson"]) for name, f in run.items()} == {
        "files": (True, None),
        "batch_size": (False, "100000"),
        "dry_run": (False, "false"),
    }
