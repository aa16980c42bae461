"""The GraphQL client and trigger_import against a canned webserver: what is sent, what is refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contact_import_pipeline.bucket import LocalFolderBucket, MissingObjectError
from contact_import_pipeline.dagster_api import (
    DagsterApi,
    DagsterConfigInvalid,
    DagsterServerError,
    DagsterUnreachable,
    RunNotFound,
    trigger_import,
)
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_tests.servers import LOADED_WORKSPACE, FakeDagster, free_port

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000001"
CSV = b"name,phone\nAda,+1 202 456 1414\n"


def launched(run_id: str = RUN_ID) -> dict:
    return {"__typename": "LaunchRunSuccess", "run": {"runId": run_id, "status": "QUEUED"}}


def fake(**results: object) -> FakeDagster:
    return FakeDagster(
        {
            "workspaceOrError": LOADED_WORKSPACE,
            "addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"},
            "launchRun": launched(),
            **results,
        }
    )


@pytest.fixture
def bucket(tmp_path: Path) -> LocalFolderBucket:
    return LocalFolderBucket(root=str(tmp_path / "bucket"))


def listed(bucket: LocalFolderBucket) -> list[str]:
    return [obj.key for obj in bucket.list_objects()]


def test_local_file_is_uploaded_then_partition_added_and_run_launched(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    source = tmp_path / "Spring Fair.csv"
    source.write_bytes(CSV)
    with fake() as server:
        result = trigger_import(
            str(source), "acme", tag="fair", board_phone="+1 202 456 1414", region="us", batch_size=500,
            dagster_url=server.url + "/", bucket=bucket,
        )
    key = "acme/imports/Spring Fair.csv"
    assert (result.run_id, result.partition_key) == (RUN_ID, key)
    assert result.run_url == f"{server.url}/runs/{RUN_ID}"
    assert listed(bucket) == [key]
    assert bucket.read_bytes(key, 100) == CSV
    assert server.queries() == ["workspaceOrError", "addDynamicPartition", "launchRun"]
    assert {(r["method"], r["path"], r["type"]) for r in server.requests} == {("POST", "/graphql", "application/json")}
    repo = {"repositoryLocationName": "contact_import_pipeline", "repositoryName": "__repository__"}
    assert server.variables("addDynamicPartition") == [{"repo": repo, "name": "contact_files", "key": key}]
    (params,) = [v["executionParams"] for v in server.variables("launchRun")]
    assert params["selector"] == {**repo, "jobName": "import_job"}
    assert params["runConfigData"] == {
        "ops": {
            "raw_csv": {
                "config": {
                    "workspace_id": "acme", "source": "", "import_tag": "fair",
                    "board_phone_number": "+1 202 456 1414", "default_region": "us", "batch_size": 500,
                }
            }
        }
    }
    (obj,) = bucket.list_objects()
    assert {t["key"]: t["value"] for t in params["executionMetadata"]["tags"]} == {
        "dagster/partition": key,
        "contact_import/file": key,
        "contact_import/workspace": "acme",
        "contact_import/origin": "graphql",
        "contact_import/version": obj.version,
    }


def test_same_name_other_content_gets_a_time_suffix_same_content_reuses_the_key(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    bucket.write_bytes("acme/imports/list.csv", b"name,phone\nOld,+1 202 456 1414\n")
    bucket.write_bytes("acme/imports/same.csv", CSV)
    (tmp_path / "list.csv").write_bytes(CSV)
    (tmp_path / "same.csv").write_bytes(CSV)
    with fake() as server:
        other = trigger_import("list.csv", "acme", dagster_url=server.url, bucket=bucket)
        same = trigger_import("same.csv", "acme", dagster_url=server.url, bucket=bucket)
    assert re.fullmatch(r"acme/imports/list-\d{8}T\d{12}Z\.csv", other.partition_key)
    assert same.partition_key == "acme/imports/same.csv"  # already there: not uploaded again
    assert sorted(listed(bucket)) == sorted(["acme/imports/list.csv", other.partition_key, "acme/imports/same.csv"])
    assert bucket.read_bytes(other.partition_key, 100) == CSV
    assert bucket.read_bytes("acme/imports/list.csv", 100).startswith(b"name,phone\nOld")


def test_bucket_key_and_url_sources_upload_nothing(bucket: LocalFolderBucket) -> None:
    bucket.write_bytes("acme/imports/a.csv", CSV)
    with fake() as server:
        from_key = trigger_import("acme/imports/a.csv", "acme", dagster_url=server.url, bucket=bucket)
        from_url = trigger_import("https://files.example.com/x/b%20c.csv?sig=1", "acme", dagster_url=server.url, bucket=bucket)
    assert (from_key.partition_key, from_url.partition_key) == ("acme/imports/a.csv", "acme/imports/b_20c.csv")
    assert listed(bucket) == ["acme/imports/a.csv"]
    key_config, url_config = [v["executionParams"]["runConfigData"]["ops"]["raw_csv"]["config"] for v in server.variables("launchRun")]
    assert (key_config["source"], url_config["source"]) == ("", "https://files.example.com/x/b%20c.csv?sig=1")


@pytest.mark.parametrize(
    ("source", "workspace", "extra", "error", "message"),
    [
        ("people.csv", "", {}, OptionsError, "workspace id '' is invalid"),
        ("people.csv", "../etc", {}, OptionsError, "workspace id '../etc' is invalid"),
        ("  ", "acme", {}, OptionsError, "a source is required"),
        ("missing.csv", "acme", {}, ImportFileError, "missing.csv: file not found"),
        ("acme/imports/gone.csv", "acme", {}, MissingObjectError, "acme/imports/gone.csv: not found in the bucket"),
        ("other/imports/a.csv", "acme", {}, OptionsError, "does not match the file's workspace 'other'"),
        ("people.csv", "acme", {"board_phone": "12"}, OptionsError, "board_phone_number '12' is not a valid phone number"),
        ("people.csv", "acme", {"region": "XX"}, OptionsError, "default_region 'XX' is not a known"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent_or_uploaded(
    tmp_path: Path, bucket: LocalFolderBucket, source: str, workspace: str, extra: dict, error: type, message: str
) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    with fake() as server:
        with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
            trigger_import(source, workspace, dagster_url=server.url, bucket=bucket, **extra)
    assert server.requests == []
    assert listed(bucket) == []


def test_unreachable_webserver_uploads_and_launches_nothing(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DagsterUnreachable, match=f"cannot reach the Dagster webserver at {url} .*--dagster-url"):
        trigger_import("people.csv", "acme", dagster_url=url, bucket=bucket)
    assert listed(bucket) == []


def test_location_not_loaded_is_refused_before_upload(tmp_path: Path, bucket: LocalFolderBucket) -> None:
    (tmp_path / "people.csv").write_bytes(CSV)
    broken = {
        "__typename": "Workspace",
        "locationEntries": [{"name": "contact_import_pipeline", "loadStatus": "LOADED",
                             "locationOrLoadError": {"__typename": "PythonError", "message": "ImportError: boom"}}],
    }
    with fake(workspaceOrError=broken) as server:
        with pytest.raises(DagsterServerError, match="code location contact_import_pipeline failed to load: ImportError: boom"):
            trigger_import("people.csv", "acme", dagster_url=server.url, bucket=bucket)
    assert server.queries() == ["workspaceOrError"]
    assert listed(bucket) == []


def test_config_error_from_dagster_is_one_readable_exception() -> None:
    invalid = {
        "__typename": "RunConfigValidationInvalid",
        "errors": [{"message": 'Invalid scalar at path root:ops:raw_csv:config:batch_size. Value "x" of type '
                               '"<class \'str\'>" is not valid for expected type "Int".', "reason": "RUNTIME_TYPE_MISMATCH"}],
    }
    with fake(launchRun=invalid) as server:
        with pytest.raises(DagsterConfigInvalid) as caught:
            DagsterApi(server.url).launch_import({"ops": {"raw_csv": {"config": {"batch_size": "x"}}}}, {})
    assert str(caught.value).startswith("Dagster refused the run config: Invalid scalar at path root:ops:raw_csv:config:batch_size.")
    assert len(caught.value.errors) == 1


def test_python_error_and_missing_run_have_their_own_exceptions() -> None:
    python_error = {"__typename": "PythonError", "message": "database is locked"}
    with fake(launchRun=python_error, runOrError={"__typename": "RunNotFoundError", "message": "x"}) as server:
        api = DagsterApi(server.url)
        with pytest.raises(DagsterServerError, match=r"cannot launch import_job \(PythonError\): database is locked"):
            api.launch_import({}, {})
        with pytest.raises(RunNotFound, match="no run with id 'abc'"):
            api.read_run("abc")


def test_read_run_parses_progress_tags() -> None:
    run = {
        "__typename": "Run", "runId": RUN_ID, "status": "STARTED",
        "tags": [{"key": "contact_import/processed", "value": "1500"}, {"key": "contact_import/total", "value": "5000"},
                 {"key": "contact_import/status", "value": "processing"},
                 {"key": "contact_import/errors", "value": json.dumps([{"row": 3, "reason": "invalid_phone"}])},
                 {"key": "dagster/partition", "value": "acme/imports/a.csv"}],
    }
    with fake(runOrError=run) as server:
        state = DagsterApi(server.url).read_run(RUN_ID)
    assert (state.status, state.finished) == ("STARTED", False)
    assert state.progress == {"processed": 1500, "total": 5000, "status": "processing",
                              "errors": [{"row": 3, "reason": "invalid_phone"}]}
    assert state.tags["dagster/partition"] == "acme/imports/a.csv"


def test_a_non_graphql_answer_is_reported_as_unreachable() -> None:
    with fake() as server:
        with pytest.raises(DagsterUnreachable, match="answered HTTP 405 without data"):
            DagsterApi(server.url + "/not-dagster").read_run(RUN_ID)
