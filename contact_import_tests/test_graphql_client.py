"""The GraphQL client and trigger_import against a canned webserver: what is sent, what is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contact_import_pipeline.app.graphql import (
    DagsterApi,
    DagsterConfigInvalid,
    DagsterServerError,
    DagsterUnreachable,
    RunNotFound,
)
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.storage.bucket import BucketObject, LocalFolderBucket, MissingObjectError
from contact_import_tests.helpers import free_port
from contact_import_tests.servers import FakeDagster

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000001"
ROOT_RUN_ID = "0f0e0d0c-0000-4000-8000-000000000000"
CSV = b"name,phone\nAda,+1 202 456 1414\n"
IN_MEMORY = {"io_manager": {"config": {"in_memory": True}}}


def fake(**results: object) -> FakeDagster:
    return FakeDagster.launching(RUN_ID, **results)


@pytest.fixture
def bucket(tmp_path: Path) -> LocalFolderBucket:
    return LocalFolderBucket(root=str(tmp_path / "bucket"))


def listed(bucket: LocalFolderBucket) -> list[str]:
    return [obj.key for obj in bucket.list_objects()]


def objects(bucket: LocalFolderBucket) -> dict[str, BucketObject]:
    return {obj.key: obj for obj in bucket.list_objects()}


def uploaded(obj: BucketObject) -> dict[str, object]:
    """A bucket file's identity in the run config: the sensor skips versions already launched by it."""
    return {"key": obj.key, "version": obj.version, "uploaded_at": obj.last_modified}


def test_local_file_is_uploaded_then_one_run_launched(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    source = tmp_path / "Spring Fair.csv"
    source.write_bytes(CSV)
    with fake() as server:
        result = trigger_import(
            [str(source)],
            "acme",
            tag="fair",
            board_phone="+1 202 456 1414",
            region="us",
            batch_size=500,
            dagster_url=server.url + "/",
            bucket=bucket,
        )
    key = "acme/imports/Spring Fair.csv"
    assert (result.run_id, result.keys) == (RUN_ID, [key])
    assert result.run_url == f"{server.url}/runs/{RUN_ID}"
    assert listed(bucket) == [key]
    assert bucket.read_bytes(key, 100) == CSV
    assert server.queries() == ["workspaceOrError", "launchRun"]
    assert {(r["method"], r["path"], r["type"]) for r in server.requests} == {("POST", "/graphql", "application/json")}
    (params,) = [v["executionParams"] for v in server.variables("launchRun")]
    assert params["selector"] == {
        "repositoryLocationName": "contact_import_pipeline",
        "repositoryName": "__repository__",
        "jobName": "import_job",
    }
    ((config, tags),) = server.launches()
    file = uploaded(objects(bucket)[key]) | {
        "workspace_id": "acme",
        "import_tag": "fair",
        "board_phone_number": "+1 202 456 1414",
        "default_region": "us",
    }
    assert config == {
        "ops": {"raw_csv": {"config": {"files": [file], "batch_size": 500}}},
        "execution": {"config": {"in_process": True}},
        "resources": IN_MEMORY,
    }
    assert tags == {
        "contact_import/origin": "graphql",
        "contact_import/files": "1",
        "contact_import/ws.acme": "acme",
        "contact_import/file.acme.imports.Spring-Fair.csv": key,
    }


def test_several_sources_make_one_run_listing_them_in_the_given_order(
    tmp_path: Path, bucket: LocalFolderBucket
) -> None:
    bucket.write_bytes("acme/imports/a.csv", CSV)
    (tmp_path / "b.csv").write_bytes(b"name,phone\nBob,+1 202 456 1415\n")
    (tmp_path / "c.csv").write_bytes(b"name,phone\nCy,+1 202 456 1416\n")
    with fake() as server:
        sources = ["b.csv", "acme/imports/a.csv", "c.csv"]
        result = trigger_import(sources, "acme", tag="spring", dagster_url=server.url, bucket=bucket)
    keys = ["acme/imports/b.csv", "acme/imports/a.csv", "acme/imports/c.csv"]
    assert (result.run_id, result.keys) == (RUN_ID, keys)
    assert sorted(listed(bucket)) == sorted(keys)
    assert bucket.read_bytes("acme/imports/c.csv", 100) == (tmp_path / "c.csv").read_bytes()
    assert server.queries() == ["workspaceOrError", "launchRun"]
    ((config, tags),) = server.launches()
    stored = objects(bucket)
    assert config["ops"]["raw_csv"]["config"] == {
        "files": [uploaded(stored[key]) | {"workspace_id": "acme", "import_tag": "spring"} for key in keys]
    }
    assert (config["execution"], config["resources"]) == ({"config": {"in_process": True}}, IN_MEMORY)
    assert tags == {
        "contact_import/origin": "graphql",
        "contact_import/files": "3",
        "contact_import/ws.acme": "acme",
        "contact_import/file.acme.imports.b.csv": "acme/imports/b.csv",
        "contact_import/file.acme.imports.a.csv": "acme/imports/a.csv",
        "contact_import/file.acme.imports.c.csv": "acme/imports/c.csv",
    }


@pytest.mark.parametrize(
    ("sources", "stored"),
    [
        (["people.csv", "people.csv"], {}),
        (["people.csv", "https://files.example.com/x/people.csv?sig=1"], {}),
        (["acme/imports/people.csv", "people.csv"], {"acme/imports/people.csv": CSV}),
    ],
)
def test_a_file_given_twice_is_refused_before_anything_is_uploaded_or_launched(
    tmp_path: Path, bucket: LocalFolderBucket, sources: list[str], stored: dict[str, bytes]
) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    for key, data in stored.items():
        bucket.write_bytes(key, data)
    with (
        fake() as server,
        pytest.raises(
            OptionsError,
            match="^" + re.escape("several sources would import as the same key acme/imports/people.csv: rename one"),
        ),
    ):
        trigger_import(sources, "acme", dagster_url=server.url, bucket=bucket)
    assert server.requests == []
    assert listed(bucket) == list(stored)


def test_same_name_other_content_gets_a_time_suffix_same_content_reuses_the_key(
    tmp_path: Path, bucket: LocalFolderBucket
) -> None:
    bucket.write_bytes("acme/imports/list.csv", b"name,phone\nOld,+1 202 456 1414\n")
    bucket.write_bytes("acme/imports/same.csv", CSV)
    (tmp_path / "list.csv").write_bytes(CSV)
    (tmp_path / "same.csv").write_bytes(CSV)
    with fake() as server:
        (other,) = trigger_import(["list.csv"], "acme", dagster_url=server.url, bucket=bucket).keys
        (same,) = trigger_import(["same.csv"], "acme", dagster_url=server.url, bucket=bucket).keys
    assert re.fullmatch(r"acme/imports/list-\d{8}T\d{12}Z\.csv", other)
    assert same == "acme/imports/same.csv"  # already there: not uploaded again
    assert sorted(listed(bucket)) == sorted(["acme/imports/list.csv", other, "acme/imports/same.csv"])
    assert bucket.read_bytes(other, 100) == CSV
    assert bucket.read_bytes("acme/imports/list.csv", 100).startswith(b"name,phone\nOld")
    assert server.launched_keys() == [[other], [same]]


def test_bucket_key_runs_in_process_and_url_in_step_processes_uploading_nothing(bucket: LocalFolderBucket) -> None:
    bucket.write_bytes("acme/imports/a.csv", CSV)
    url = "https://files.example.com/x/b%20c.csv?sig=1"
    with fake() as server:
        from_key = trigger_import(["acme/imports/a.csv"], "acme", dagster_url=server.url, bucket=bucket)
        from_url = trigger_import([url], "acme", dagster_url=server.url, bucket=bucket)
    assert (from_key.keys, from_url.keys) == (["acme/imports/a.csv"], ["acme/imports/b_20c.csv"])
    assert listed(bucket) == ["acme/imports/a.csv"]
    (obj,) = bucket.list_objects()
    (key_config, key_tags), (url_config, url_tags) = server.launches()
    assert key_config == {
        "ops": {"raw_csv": {"config": {"files": [uploaded(obj) | {"workspace_id": "acme"}]}}},
        "execution": {"config": {"in_process": True}},
        "resources": IN_MEMORY,
    }
    # A URL's size is unknown until the run reads it: a process per step, outputs on disk.
    assert url_config == {
        "ops": {
            "raw_csv": {"config": {"files": [{"key": "acme/imports/b_20c.csv", "source": url, "workspace_id": "acme"}]}}
        },
        "execution": {"config": {"in_process": False}},
    }
    assert (
        key_tags["contact_import/file.acme.imports.a.csv"],
        url_tags["contact_import/file.acme.imports.b_20c.csv"],
    ) == ("acme/imports/a.csv", "acme/imports/b_20c.csv")


@pytest.mark.parametrize(("step_processes_bytes", "in_process"), [(len(CSV) + 1, True), (len(CSV), False)])
def test_a_file_at_the_step_processes_limit_runs_in_step_processes(
    tmp_path: Path,
    bucket: LocalFolderBucket,
    monkeypatch: pytest.MonkeyPatch,
    step_processes_bytes: int,
    in_process: bool,
) -> None:
    monkeypatch.setenv("CONTACT_STEP_PROCESSES_BYTES", str(step_processes_bytes))
    (tmp_path / "people.csv").write_bytes(CSV)
    with fake() as server:
        trigger_import(["people.csv"], "acme", dagster_url=server.url, bucket=bucket)
    ((config, _),) = server.launches()
    assert config["execution"] == {"config": {"in_process": in_process}}
    assert config.get("resources") == (IN_MEMORY if in_process else None)


@pytest.mark.parametrize(
    ("sources", "workspace", "extra", "error", "message"),
    [
        (["people.csv"], "", {}, OptionsError, "workspace id '' is invalid"),
        (["people.csv"], "../etc", {}, OptionsError, "workspace id '../etc' is invalid"),
        ([], "acme", {}, OptionsError, "a source is required"),
        (["  "], "acme", {}, OptionsError, "a source is required"),
        (["people.csv", "missing.csv"], "acme", {}, ImportFileError, "missing.csv: file not found"),
        (
            ["people.csv", "acme/imports/gone.csv"],
            "acme",
            {},
            MissingObjectError,
            "acme/imports/gone.csv: not found in the bucket",
        ),
        (["other/imports/a.csv"], "acme", {}, OptionsError, "does not match the file's workspace 'other'"),
        (
            ["people.csv"],
            "acme",
            {"board_phone": "12"},
            OptionsError,
            "board_phone_number '12' is not a valid phone number",
        ),
        (["people.csv"], "acme", {"region": "XX"}, OptionsError, "default_region 'XX' is not a known"),
        (["people.csv"], "acme", {"batch_size": 0}, OptionsError, "batch_size must be between 1 and"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent_or_uploaded(
    tmp_path: Path,
    bucket: LocalFolderBucket,
    sources: list[str],
    workspace: str,
    extra: dict,
    error: type,
    message: str,
) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    with fake() as server, pytest.raises(error, match=re.escape(message)):
        trigger_import(sources, workspace, dagster_url=server.url, bucket=bucket, **extra)
    assert server.requests == []
    assert listed(bucket) == []


def test_unreachable_webserver_uploads_and_launches_nothing(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DagsterUnreachable, match=f"cannot reach the Dagster webserver at {url} .*--dagster-url"):
        trigger_import(["people.csv"], "acme", dagster_url=url, bucket=bucket)
    assert listed(bucket) == []


def test_location_not_loaded_is_refused_before_upload(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    broken = {
        "__typename": "Workspace",
        "locationEntries": [
            {
                "name": "contact_import_pipeline",
                "loadStatus": "LOADED",
                "locationOrLoadError": {"__typename": "PythonError", "message": "ImportError: boom"},
            }
        ],
    }
    with (
        fake(workspaceOrError=broken) as server,
        pytest.raises(
            DagsterServerError, match="code location contact_import_pipeline failed to load: ImportError: boom"
        ),
    ):
        trigger_import(["people.csv"], "acme", dagster_url=server.url, bucket=bucket)
    assert server.queries() == ["workspaceOrError"]
    assert listed(bucket) == []


def test_config_error_from_dagster_is_one_readable_exception() -> None:
    invalid = {
        "__typename": "RunConfigValidationInvalid",
        "errors": [
            {
                "message": 'Invalid scalar at path root:ops:raw_csv:config:batch_size. Value "x" of type '
                '"<class \'str\'>" is not valid for expected type "Int".',
                "reason": "RUNTIME_TYPE_MISMATCH",
            }
        ],
    }
    with fake(launchRun=invalid) as server, pytest.raises(DagsterConfigInvalid) as caught:
        DagsterApi(server.url).launch_import({"ops": {"raw_csv": {"config": {"batch_size": "x"}}}}, {})
    assert str(caught.value).startswith(
        "Dagster refused the run config: Invalid scalar at path root:ops:raw_csv:config:batch_size."
    )
    assert len(caught.value.errors) == 1


def test_python_error_and_missing_run_have_their_own_exceptions() -> None:
    python_error = {"__typename": "PythonError", "message": "database is locked"}
    with fake(launchRun=python_error, runOrError={"__typename": "RunNotFoundError", "message": "x"}) as server:
        api = DagsterApi(server.url)
        with pytest.raises(DagsterServerError, match=r"cannot launch import_job \(PythonError\): database is locked"):
            api.launch_import({}, {})
        with pytest.raises(RunNotFound, match="no run with id 'abc'"):
            api.read_run("abc")


@pytest.mark.parametrize(("root_run_id", "expected_root"), [(ROOT_RUN_ID, ROOT_RUN_ID), (None, RUN_ID)])
def test_read_run_parses_progress_tags_and_the_root_run(root_run_id: str | None, expected_root: str) -> None:
    """A re-execution's imports are recorded under its root run; a first run (rootRunId null) is its own root."""
    run = {
        "__typename": "Run",
        "runId": RUN_ID,
        "rootRunId": root_run_id,
        "status": "STARTED",
        "tags": [
            {"key": "contact_import/processed", "value": "1500"},
            {"key": "contact_import/total", "value": "5000"},
            {"key": "contact_import/status", "value": "processing"},
            {"key": "contact_import/errors", "value": json.dumps([{"row": 3, "reason": "invalid_phone"}])},
            {"key": "dagster/retry_strategy", "value": "ALL_STEPS"},
        ],
    }
    with fake(runOrError=run) as server:
        state = DagsterApi(server.url).read_run(RUN_ID)
    assert (state.run_id, state.root_run_id, state.status, state.finished) == (RUN_ID, expected_root, "STARTED", False)
    assert state.progress == {
        "processed": 1500,
        "total": 5000,
        "status": "processing",
        "errors": [{"row": 3, "reason": "invalid_phone"}],
    }
    assert state.tags["dagster/retry_strategy"] == "ALL_STEPS"


def test_a_non_graphql_answer_is_reported_as_unreachable() -> None:
    with fake() as server, pytest.raises(DagsterUnreachable, match="answered HTTP 405 without data"):
        DagsterApi(server.url + "/not-dagster").read_run(RUN_ID)
