"""`contact-import` in this process: parsing and usage errors, and `trigger` and `status` against a
canned webserver (and a real ledger for each import's line): output and exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contact_import_pipeline.app import cli
from contact_import_pipeline.app.graphql import DagsterUnreachable, RunState
from contact_import_pipeline.importing.lifecycle import import_id_for
from contact_import_pipeline.keys import parse_import_key
from contact_import_pipeline.model import BATCH_COLUMNS
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import ImportClaim, ImportResult, Ledger, PlannedImport
from contact_import_pipeline.vocabulary import Origin
from contact_import_tests.helpers import free_port, insert_rows
from contact_import_tests.servers import LOADED_WORKSPACE, FakeDagster

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000002"
ROOT_RUN_ID = "0f0e0d0c-0000-4000-8000-000000000001"  # RUN_ID re-executes it
OTHER_RUN_ID = "0f0e0d0c-0000-4000-8000-000000000003"
FILE = "acme/imports/people.csv"
CSV = "name,phone\nAda,+1 202 456 1414\n"


def run(tags: dict[str, object], status: str = "STARTED", run_id: str = RUN_ID, root_run_id: str | None = None) -> dict:
    """The webserver's answer to RunState: ``tags`` are the run's progress tags."""
    return {
        "__typename": "Run",
        "runId": run_id,
        "rootRunId": root_run_id,
        "status": status,
        "tags": [{"key": f"contact_import/{k}", "value": str(v)} for k, v in tags.items()],
    }


PROCESSING = {
    "status": "processing",
    "total": 5000,
    "processed": 2500,
    "imported": 2400,
    "updated": 0,
    "skipped": 60,
    "failed": 40,
    "current_batch": 5,
    "total_batches": 10,
}
COMPLETED = PROCESSING | {"status": "completed", "processed": 5000, "imported": 4900, "current_batch": 10}
NO_PHONE = "acme/imports/people.csv: no phone column found; headers were: 'name'"
NO_LEDGER = "  (each file's progress is read from the contacts database: pass --database-url)"


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "STATUS_POLL_SECONDS", 0.0)


@pytest.mark.parametrize("names", [["people.csv"], ["people.csv", "more.csv"]])
def test_trigger_prints_the_run_and_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], names: list[str]
) -> None:
    for name in names:
        (tmp_path / name).write_text(CSV)
    keys = [f"acme/imports/{name}" for name in names]
    with FakeDagster.launching(RUN_ID) as server:
        assert cli.main(["trigger", *names, "--workspace", "acme", "--dagster-url", server.url]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"Launched run {RUN_ID} for {', '.join(keys)}",
            f"  watch it: {server.url}/runs/{RUN_ID}",
            f"  progress: contact-import status {RUN_ID} --follow",
        ]
        assert cli.main(["trigger", *names, "--workspace", "acme", "--dagster-url", server.url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "run_id": RUN_ID,
            "run_url": f"{server.url}/runs/{RUN_ID}",
            "files": keys,
        }
    assert (
        server.queries() == ["workspaceOrError", "launchRun"] * 2
    )  # one run per command, whatever the number of files
    assert server.launched_keys() == [keys, keys]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trigger", "people.csv", "--workspace", "a/b"], "contact-import: workspace id 'a/b' is invalid"),
        (["trigger", "people.csv", "nope.csv", "--workspace", "acme"], "contact-import: nope.csv: file not found"),
        (
            ["trigger", "acme/imports/nope.csv", "--workspace", "acme"],
            "contact-import: acme/imports/nope.csv: not found in the bucket",
        ),
        (
            ["trigger", "people.csv", "--workspace", "acme", "--board-phone", "call me"],
            "contact-import: board_phone_number 'call me' is not a valid phone number (region US)",
        ),
        (
            ["trigger", "people.csv", "--workspace", "acme", "--batch-size", "0"],
            "contact-import: batch_size must be between 1 and",
        ),
        (
            ["trigger", "people.csv", "people.csv", "--workspace", "acme"],
            f"contact-import: several sources would import as the same key {FILE}: rename one, or trigger them separately\n",
        ),
    ],
)
def test_trigger_bad_input_exits_2_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "people.csv").write_text(CSV)
    with FakeDagster({"workspaceOrError": LOADED_WORKSPACE}) as server:
        assert cli.main([*argv, "--dagster-url", server.url]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert server.requests == []
    assert not (tmp_path / ".contact_import" / "bucket" / "acme").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["trigger", "people.csv"], "Error: Missing option '--workspace'."),
        (["trigger", "--workspace", "acme"], "Error: Missing argument 'SOURCE...'."),
        (
            ["import", "people.csv", "--workspace", "acme", "--on-duplicate", "merge"],
            "Error: Invalid value for '--on-duplicate': 'merge' is not one of 'skip', 'update'.",
        ),
        (
            ["import", "people.csv", "--workspace", "acme", "--batch-size", "many"],
            "Error: Invalid value for '--batch-size': 'many' is not a valid integer.",
        ),
        (["status"], "Error: Missing argument 'RUN_ID'."),
        (["export"], "Error: No such command 'export'. (Did you mean one of: 'import', 'imports'?)"),
    ],
)
def test_usage_errors_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    """main() returns the code (the console script exits with it) instead of exiting the interpreter."""
    assert cli.main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("Usage: contact-import ")
    assert out.err.splitlines()[-1] == message


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["import", "--help"], ["status", "-h"]])
def test_help_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("Usage: contact-import")


def test_no_command_shows_the_commands_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    listed = capsys.readouterr().err.split("Commands:")[1].strip().splitlines()
    assert [line.split()[0] for line in listed] == [
        "contacts",
        "demo",
        "import",
        "imports",
        "status",
        "trigger",
        "undo",
    ]


def test_trigger_unreachable_webserver_exits_2_uploads_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "people.csv").write_text(CSV)
    monkeypatch.setenv("DAGSTER_URL", f"http://127.0.0.1:{free_port()}")
    assert cli.main(["trigger", "people.csv", "--workspace", "acme", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "failed" and out["error"].startswith(
        "cannot reach the Dagster webserver at http://127.0.0.1:"
    )
    assert not (tmp_path / ".contact_import" / "bucket" / "acme").exists()


def test_status_follow_draws_progress_until_success(capsys: pytest.CaptureFixture[str]) -> None:
    states = [run({}, "QUEUED"), run(PROCESSING), run(PROCESSING), run(COMPLETED, "SUCCESS")]
    with FakeDagster({"runOrError": states}) as server:
        assert cli.main(["status", RUN_ID, "--follow", "--dagster-url", server.url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[------------------------------] queued (QUEUED)",
        "[###############---------------] 2500/5000 processed | imported 2400 | skipped 60 | failed 40 | batch 5/10 | processing",
        f"run {RUN_ID} completed: 5000 rows | imported 4900 | updated 0 | skipped 60 | failed 40 | batches 10",
        NO_LEDGER,
    ]


def test_status_follow_keeps_going_through_a_webserver_restart(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[RunState | DagsterUnreachable] = [
        DagsterUnreachable("down"),
        DagsterUnreachable("down"),
        RunState(RUN_ID, "SUCCESS", {}, COMPLETED),
    ]

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
        assert capsys.readouterr().out.splitlines() == [f"run {RUN_ID} failed: {NO_PHONE}", NO_LEDGER]
        assert cli.main(["status", RUN_ID, "--json", "--dagster-url", server.url]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["run_status"], out["error"], out["progress"]["status"]) == ("FAILURE", NO_PHONE, "failed")


def test_status_reads_step_failures_when_the_run_left_no_reason(capsys: pytest.CaptureFixture[str]) -> None:
    events = {
        "__typename": "EventConnection",
        "events": [
            {
                "__typename": "ExecutionStepFailureEvent",
                "stepKey": "deduped_contacts",
                "error": {"message": "OperationalError: connection refused\n"},
            },
            {"__typename": "RunFailureEvent"},
        ],
    }
    with FakeDagster({"runOrError": run({"status": "processing"}, "FAILURE"), "logsForRun": events}) as server:
        assert cli.main(["status", RUN_ID, "--follow", "--dagster-url", server.url]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"run {RUN_ID} failed: deduped_contacts: OperationalError: connection refused",
        NO_LEDGER,
    ]


def test_status_of_an_unknown_run_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeDagster({"runOrError": {"__typename": "RunNotFoundError", "message": "x"}}) as server:
        assert cli.main(["status", "nope", "--dagster-url", server.url]) == 2
    assert capsys.readouterr().err == "contact-import: no run with id 'nope'\n"


# --- each import of the run, from the ledger -----------------------------------------------------

TAG_TIME = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BROKEN = "acme/imports/broken.csv: no phone column found; headers were: 'name'"


def contact(name: str, phone: str) -> tuple[str, ...]:
    return (name, *[""] * (len(BATCH_COLUMNS) - 2), phone)


def claim(ledger: Ledger, root_run_id: str, run_id: str, files: list[tuple[str, str]]) -> list[str]:
    """Claim ``(key, import tag)`` files in upload order as a run does when it starts; their import ids."""
    claims = [
        ImportClaim(
            import_id=import_id_for(root_run_id, key),
            position=position,
            key=key,
            version="v1",
            workspace_id=parse_import_key(key).workspace_id,
            source=key,
            import_tag=tag,
            tag_time=TAG_TIME,
            origin=Origin.GRAPHQL,
        )
        for position, (key, tag) in enumerate(files)
    ]
    ledger.claim(claims, run_id=run_id, root_run_id=root_run_id)
    return [c.import_id for c in claims]


def completed(import_id: str, *, imported: int, skipped: int, failed: int) -> ImportResult:
    return ImportResult(
        import_id=import_id,
        total=imported + skipped + failed,
        imported=imported,
        updated=0,
        skipped=skipped,
        failed=failed,
        skipped_by_reason={"duplicate_in_file": skipped} if skipped else {},
        failed_by_reason={"invalid_phone": failed} if failed else {},
        errors=[],
        rejects_file=None,
        details={},
    )


@pytest.fixture
def ledger(database_url: str) -> Iterator[Ledger]:
    """The ledger of a run (ROOT_RUN_ID, re-executed as RUN_ID) of three files while its third is
    inserting: one completed, one failed as a file, one with 2 of its 4 rows landed; and of another run."""
    store = ContactsStore(database_url)
    store.create_schema()
    ledger = Ledger(store)
    people, broken, late = claim(
        ledger,
        ROOT_RUN_ID,
        RUN_ID,
        [(FILE, "fair"), ("acme/imports/broken.csv", ""), ("beta/imports/late.csv", "spring")],
    )
    ledger.planned(
        [
            PlannedImport(people, total=5, skipped=1, failed=1, planned_batches=1),
            PlannedImport(late, total=4, skipped=0, failed=1, planned_batches=2),
        ]
    )
    ledger.complete([completed(people, imported=3, skipped=1, failed=1)])
    ledger.fail(broken, BROKEN)
    insert_rows(
        store,
        [contact("Lin", "+12025550101"), contact("Max", "+12025550102")],
        workspace_id="beta",
        import_id=late,
        import_tag="spring",
    )
    (other,) = claim(ledger, OTHER_RUN_ID, OTHER_RUN_ID, [("acme/imports/other.csv", "other")])
    ledger.complete([completed(other, imported=2, skipped=0, failed=0)])
    yield ledger
    store.dispose()


def test_status_lists_each_import_of_the_run_from_the_ledger(
    database_url: str, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A re-execution finds its root run's imports; a failed import fails a run that succeeded."""
    processing = {
        "status": "processing",
        "total": 9,
        "processed": 8,
        "imported": 5,
        "updated": 0,
        "skipped": 1,
        "failed": 2,
        "current_batch": 2,
        "total_batches": 3,
    }
    done = processing | {"status": "completed", "processed": 9, "imported": 6, "current_batch": 3}
    states = [run(processing, root_run_id=ROOT_RUN_ID), run(done, "SUCCESS", root_run_id=ROOT_RUN_ID)]
    people = f"  {FILE} (acme, fair): completed 5/5 | imported 3 | updated 0 | skipped 1 | failed 1"
    broken = (
        "  acme/imports/broken.csv (acme, import:2026-03-01T12:00:00Z): failed 0/0 | imported 0 | updated 0 | skipped 0 | "
        f"failed 0 | {BROKEN}"
    )
    argv = ["status", RUN_ID, "--database-url", database_url]
    with FakeDagster({"runOrError": states}) as server:
        assert cli.main([*argv, "--dagster-url", server.url]) == 0  # still running: nothing to fail on yet
        assert capsys.readouterr().out.splitlines() == [
            "[##########################----] 8/9 processed | imported 5 | skipped 1 | failed 2 | batch 2/3 | processing",
            people,
            broken,
            "  beta/imports/late.csv (beta, spring): running 3/4 | imported 2 | updated 0 | skipped 0 | failed 1",
        ]
        ledger.complete(
            [completed(import_id_for(ROOT_RUN_ID, "beta/imports/late.csv"), imported=3, skipped=0, failed=1)]
        )
        assert cli.main([*argv, "--dagster-url", server.url]) == 1
        assert capsys.readouterr().out.splitlines() == [
            f"run {RUN_ID} completed: 9 rows | imported 6 | updated 0 | skipped 1 | failed 2 | batches 3",
            people,
            broken,
            "  beta/imports/late.csv (beta, spring): completed 4/4 | imported 3 | updated 0 | skipped 0 | failed 1",
        ]
        assert cli.main([*argv, "--dagster-url", server.url, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["run_id"], out["run_status"], out["error"]) == (RUN_ID, "SUCCESS", None)
    fields = (
        "file",
        "workspace_id",
        "import_tag",
        "status",
        "error",
        "root_run_id",
        "run_id",
        "total",
        "processed",
        "imported",
        "updated",
        "skipped",
        "failed",
        "skipped_by_reason",
        "failed_by_reason",
    )
    assert [{name: entry[name] for name in fields} for entry in out["imports"]] == [
        {
            "file": FILE,
            "workspace_id": "acme",
            "import_tag": "fair",
            "status": "completed",
            "error": None,
            "root_run_id": ROOT_RUN_ID,
            "run_id": RUN_ID,
            "total": 5,
            "processed": 5,
            "imported": 3,
            "updated": 0,
            "skipped": 1,
            "failed": 1,
            "skipped_by_reason": {"duplicate_in_file": 1},
            "failed_by_reason": {"invalid_phone": 1},
        },
        {
            "file": "acme/imports/broken.csv",
            "workspace_id": "acme",
            "import_tag": "import:2026-03-01T12:00:00Z",
            "status": "failed",
            "error": BROKEN,
            "root_run_id": ROOT_RUN_ID,
            "run_id": RUN_ID,
            "total": 0,
            "processed": 0,
            "imported": 0,
            "updated": 0,
            "skipped": 0,
            "failed": 0,
            "skipped_by_reason": {},
            "failed_by_reason": {},
        },
        {
            "file": "beta/imports/late.csv",
            "workspace_id": "beta",
            "import_tag": "spring",
            "status": "completed",
            "error": None,
            "root_run_id": ROOT_RUN_ID,
            "run_id": RUN_ID,
            "total": 4,
            "processed": 4,
            "imported": 3,
            "updated": 0,
            "skipped": 0,
            "failed": 1,
            "skipped_by_reason": {},
            "failed_by_reason": {"invalid_phone": 1},
        },
    ]


def test_status_of_a_run_whose_imports_all_completed_exits_0(
    database_url: str, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the run's own imports count: the failed import of another run in the ledger does not."""
    done = {"status": "completed", "total": 2, "processed": 2, "imported": 2, "current_batch": 1, "total_batches": 1}
    with FakeDagster({"runOrError": run(done, "SUCCESS", run_id=OTHER_RUN_ID)}) as server:
        assert cli.main(["status", OTHER_RUN_ID, "--database-url", database_url, "--dagster-url", server.url]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"run {OTHER_RUN_ID} completed: 2 rows | imported 2 | updated 0 | skipped 0 | failed 0 | batches 1",
        "  acme/imports/other.csv (acme, other): completed 2/2 | imported 2 | updated 0 | skipped 0 | failed 0",
    ]


@pytest.mark.parametrize(
    "url", ["sqlite:///{tmp}/empty/contacts.db", "not a database url"], ids=["no tables", "malformed"]
)
def test_status_without_a_readable_ledger_shows_the_run_and_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """A database without the ledger's tables (or a malformed URL) leaves the run's own status."""
    argv = ["status", RUN_ID, "--database-url", url.format(tmp=tmp_path)]
    with FakeDagster({"runOrError": run(COMPLETED, "SUCCESS")}) as server:
        assert cli.main([*argv, "--dagster-url", server.url]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"run {RUN_ID} completed: 5000 rows | imported 4900 | updated 0 | skipped 60 | failed 40 | batches 10",
            NO_LEDGER,
        ]
        assert cli.main([*argv, "--dagster-url", server.url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["run_status"], out["error"], out["imports"]) == ("SUCCESS", None, None)
