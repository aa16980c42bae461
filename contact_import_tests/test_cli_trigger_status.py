"""`contact-import trigger` and `contact-import status` against a canned webserver: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contact_import_pipeline import cli
from contact_import_pipeline.dagster_api import DagsterUnreachable, RunState
from contact_import_tests.servers import LOADED_WORKSPACE, FakeDagster, free_port

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000002"
FILE = "acme/imports/people.csv"


def run(tags: dict[str, object], status: str = "STARTED") -> dict:
    return {
        "__typename": "Run", "runId": RUN_ID, "status": status,
        "tags": [{"key": f"contact_import/{k}", "value": str(v)} for k, v in tags.items()]
        + [{"key": "dagster/partition", "value": FILE}],
    }


PROCESSING = {"status": "processing", "total": 5000, "processed": 2500, "imported": 2400, "updated": 0,
              "skipped": 60, "failed": 40, "current_batch": 5, "total_batches": 10}
COMPLETED = PROCESSING | {"status": "completed", "processed": 5000, "imported": 4900, "current_batch": 10}
NO_PHONE = "acme/imports/people.csv: no phone column found; headers were: 'name'"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "STATUS_POLL_SECONDS", 0.0)


def test_trigger_prints_the_run_and_its_link(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "people.csv").write_text("name,phone\nAda,+1 202 456 1414\n")
    results = {"workspaceOrError": LOADED_WORKSPACE, "addDynamicPartition": {"__typename": "AddDynamicPartitionSuccess"},
               "launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": RUN_ID, "status": "QUEUED"}}}
    with FakeDagster(results) as server:
        assert cli.main(["trigger", "people.csv", "--workspace", "acme", "--dagster-url", server.url]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"Launched run {RUN_ID} for {FILE}",
            f"  watch it: {server.url}/runs/{RUN_ID}",
            f"  progress: contact-import status {RUN_ID} --follow",
        ]
        assert cli.main(["trigger", "people.csv", "--workspace", "acme", "--dagster-url", server.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "run_id": RUN_ID, "run_url": f"{server.url}/runs/{RUN_ID}", "partition_key": FILE}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trigger", "people.csv", "--workspace", "a/b"], "contact-import: workspace id 'a/b' is invalid"),
        (["trigger", "nope.csv", "--workspace", "acme"], "contact-import: nope.csv: file not found"),
        (["trigger", "acme/imports/nope.csv", "--workspace", "acme"], "contact-import: acme/imports/nope.csv: not found in the bucket"),
        (["trigger", "people.csv", "--workspace", "acme", "--board-phone", "call me"],
         "contact-import: board_phone_number 'call me' is not a valid phone number (region US)"),
    ],
)
def test_trigger_bad_input_exits_2_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "people.csv").write_text("name,phone\nAda,+1 202 456 1414\n")
    with FakeDagster({"workspaceOrError": LOADED_WORKSPACE}) as server:
        assert cli.main([*argv, "--dagster-url", server.url]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert server.requests == []
    assert not (tmp_path / ".contact_import" / "bucket" / "acme").exists()


def test_trigger_without_workspace_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["trigger", "people.csv"])
    assert exited.value.code == 2
    assert "the following arguments are required: --workspace" in capsys.readouterr().err


def test_trigger_unreachable_webserver_exits_2_uploads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "people.csv").write_text("name,phone\nAda,+1 202 456 1414\n")
    monkeypatch.setenv("DAGSTER_URL", f"http://127.0.0.1:{free_port()}")
    assert cli.main(["trigger", "people.csv", "--workspace", "acme", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "failed" and out["error"].startswith("cannot reach the Dagster webserver at http://127.0.0.1:")
    assert not (tmp_path / ".contact_import" / "bucket" / "acme").exists()


def test_status_follow_draws_progress_until_success(capsys: pytest.CaptureFixture[str]) -> None:
    states = [run({}, "QUEUED"), run(PROCESSING), run(PROCESSING), run(COMPLETED, "SUCCESS")]
    with FakeDagster({"runOrError": states}) as server:
        assert cli.main(["status", RUN_ID, "--follow", "--dagster-url", server.url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[------------------------------] queued (QUEUED)",
        "[###############---------------] 2500/5000 processed | imported 2400 | skipped 60 | failed 40 | batch 5/10 | processing",
        f"run {RUN_ID} completed: 5000 rows | imported 4900 | updated 0 | skipped 60 | failed 40 | batches 10",
    ]


def test_status_follow_keeps_going_through_a_webserver_restart(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[object] = [DagsterUnreachable("down"), DagsterUnreachable("down"),
                             RunState(RUN_ID, "SUCCESS", {}, COMPLETED)]

    def read_run(_api: object, _run_id: str) -> RunState:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(cli.DagsterApi, "read_run", read_run)
    assert cli.main(["status", RUN_ID, "--follow"]) == 0
    assert capsys.readouterr().out.startswith(f"run {RUN_ID} completed: 5000 rows")


def test_status_of_a_failed_run_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    failed = run({"status": "failed", "error": NO_PHONE}, "FAILURE")
    with FakeDagster({"runOrError": failed}) as server:
        assert cli.main(["status", RUN_ID, "--dagster-url", server.url]) == 1
        assert capsys.readouterr().out == f"run {RUN_ID} failed: {NO_PHONE}\n"
        assert cli.main(["status", RUN_ID, "--json", "--dagster-url", server.url]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["run_status"], out["error"], out["progress"]["status"]) == ("FAILURE", NO_PHONE, "failed")


def test_status_reads_step_failures_when_the_run_left_no_reason(capsys: pytest.CaptureFixture[str]) -> None:
    events = {"__typename": "EventConnection", "events": [
        {"__typename": "ExecutionStepFailureEvent", "stepKey": "deduped_contacts",
         "error": {"message": "OperationalError: connection refused\n"}},
        {"__typename": "RunFailureEvent"},
    ]}
    with FakeDagster({"runOrError": run({"status": "processing"}, "FAILURE"), "logsForRun": events}) as server:
        assert cli.main(["status", RUN_ID, "--follow", "--dagster-url", server.url]) == 1
    assert capsys.readouterr().out == f"run {RUN_ID} failed: deduped_contacts: OperationalError: connection refused\n"


def test_status_of_an_unknown_run_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDagster({"runOrError": {"__typename": "RunNotFoundError", "message": "x"}}) as server:
        assert cli.main(["status", "nope", "--dagster-url", server.url]) == 2
    assert capsys.readouterr().err == "contact-import: no run with id 'nope'\n"
