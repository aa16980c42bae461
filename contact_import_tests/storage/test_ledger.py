"""storage.ledger: one entry per import, whichever way it ran (CLI, sensor, GraphQL), listed as
the workspace's history, and undo of exactly what an import created, recorded on its entry."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from contact_import_pipeline.app.runner import ImportRequest, local_instance, run_import
from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME
from contact_import_tests.helpers import LOCAL_BUCKET, numbered_rows, phone_of, run_cli, write_csv

HEADER = ["First Name", "Last Name", "Email", "Mobile Phone"]


def _phones(store: ContactsStore, workspace: str) -> set[str]:
    return {r["phone_number"] for r in store.query_contacts(workspace)}


@pytest.mark.slow  # several whole imports (~10 s)
def test_undo_removes_created_contacts_only(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = numbered_rows(6)
    phones = [phone_of(i) for i in range(6)]
    before = run_import(
        ImportRequest(
            source=str(write_csv(tmp_path / "before.csv", HEADER, rows[:2])), workspace_id="ws1", import_tag="before"
        ),
        database_url=database_url,
    )
    assert before["imported"] == 2
    main_file = write_csv(tmp_path / "main.csv", HEADER, rows[:5])  # rows 0-1 exist: skipped
    main = run_import(
        ImportRequest(source=str(main_file), workspace_id="ws1", import_tag="main"), database_url=database_url
    )
    assert (main["imported"], main["skipped"]) == (3, 2)
    other = run_import(
        ImportRequest(source=str(main_file), workspace_id="ws2", import_tag="main"), database_url=database_url
    )
    assert other["imported"] == 5
    # An update-mode import that merges into row 0 and creates row 5: undoing it spares row 0.
    upd = run_import(
        ImportRequest(
            source=str(write_csv(tmp_path / "upd.csv", HEADER, [rows[0], rows[5]])),
            workspace_id="ws1",
            import_tag="upd",
            on_duplicate="update",
        ),
        database_url=database_url,
    )
    assert (upd["imported"], upd["updated"]) == (1, 1)
    store = ContactsStore(database_url)
    assert _phones(store, "ws1") == set(phones)

    code, out, _ = run_cli(["undo", "main", "--workspace", "ws1", "--dry-run", "--database-url", database_url], capsys)
    assert (code, out.strip()) == (0, "would delete 3 contacts created by import main in workspace ws1")
    assert len(_phones(store, "ws1")) == 6

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: refuse without --yes
    code, _, err = run_cli(["undo", "main", "--workspace", "ws1", "--database-url", database_url], capsys)
    assert code == 2 and "pass --yes" in err
    assert len(_phones(store, "ws1")) == 6

    code, out, _ = run_cli(
        ["undo", "main", "--workspace", "ws1", "--yes", "--database-url", database_url, "--json"], capsys
    )
    assert (code, json.loads(out)) == (0, {"workspace_id": "ws1", "import_tag": "main", "dry_run": False, "deleted": 3})
    assert _phones(store, "ws1") == {phones[0], phones[1], phones[5]}
    assert {r["phone_number"]: r["tags"] for r in store.query_contacts("ws1")} == {
        phones[0]: ["before", "upd"],
        phones[1]: ["before"],
        phones[5]: ["upd"],
    }
    assert _phones(store, "ws2") == set(phones[:5])

    code, out, _ = run_cli(["undo", "main", "--workspace", "ws1", "--yes", "--database-url", database_url], capsys)
    assert code == 0 and out.startswith(
        "nothing to undo: import main has no remaining contacts in workspace ws1 (already undone at "
    )

    code, out, _ = run_cli(["undo", "upd", "--workspace", "ws1", "--yes", "--database-url", database_url], capsys)
    assert (code, out.strip()) == (0, "deleted 1 contacts created by import upd in workspace ws1")
    assert _phones(store, "ws1") == {phones[0], phones[1]}

    entries = {e.import_tag: e for e in Ledger(store).entries(workspace_id="ws1")}
    assert (entries["main"].undone_count, entries["upd"].undone_count, entries["before"].undone_at) == (3, 1, None)
    assert entries["main"].undone_at is not None
    assert store.undo_import("ws2", "main", dry_run=True) == 5


def _run_like(origin: str, key: str, tag: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the job as the sensor or GraphQL would: from the bucket, with their tags (in process)."""
    monkeypatch.setenv("CONTACTS_DATABASE_URL", database_url)
    tags = launch.run_tags([key], origin) | ({"dagster/sensor_name": "new_files_sensor"} if origin == "sensor" else {})
    result = defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
        run_config=launch.run_config([{"key": key, "import_tag": tag}], in_process=True),
        instance=local_instance(),
        tags=tags,
    )
    assert result.success
    return result.run_id


@pytest.mark.slow  # several whole imports (~10 s)
def test_history_lists_cli_sensor_and_graphql_imports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    source = write_csv(tmp_path / "people.csv", HEADER, numbered_rows(4))
    code, out, _ = run_cli(
        ["import", str(source), "--workspace", "ws1", "--tag", "by-cli", "--database-url", database_url, "--json"],
        capsys,
    )
    assert code == 0
    cli_run = json.loads(out)["run_id"]
    code, _, _ = run_cli(
        [
            "import",
            str(tmp_path / "missing.csv"),
            "--workspace",
            "ws1",
            "--tag",
            "broken",
            "--database-url",
            database_url,
        ],
        capsys,
    )
    assert code == 2

    runs = {}
    for origin, rows in (
        ("sensor", numbered_rows(3, start=10) + numbered_rows(1)),
        ("graphql", numbered_rows(2, start=20)),
    ):
        key = f"ws1/imports/{origin}.csv"
        folder = tmp_path / LOCAL_BUCKET / "ws1" / "imports"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(write_csv(tmp_path / f"{origin}.csv", HEADER, rows), folder / f"{origin}.csv")
        runs[origin] = _run_like(origin, key, f"by-{origin}", database_url, monkeypatch)
    # A run in another workspace never shows up in ws1's history.
    run_import(ImportRequest(source=str(source), workspace_id="ws2", import_tag="elsewhere"), database_url=database_url)

    code, out, _ = run_cli(["imports", "--workspace", "ws1", "--database-url", database_url, "--json"], capsys)
    assert code == 0
    entries = json.loads(out)
    assert [(e["import_tag"], e["origin"], e["status"]) for e in entries] == [
        ("by-graphql", "graphql", "completed"),
        ("by-sensor", "sensor", "completed"),
        ("broken", "cli", "failed"),
        ("by-cli", "cli", "completed"),
    ]
    counts = {
        e["import_tag"]: tuple(e[k] for k in ("total", "imported", "updated", "skipped", "failed")) for e in entries
    }
    assert counts == {
        "by-graphql": (2, 2, 0, 0, 0),
        "by-sensor": (4, 3, 0, 1, 0),
        "broken": (0, 0, 0, 0, 0),
        "by-cli": (4, 4, 0, 0, 0),
    }
    by_tag = {e["import_tag"]: e for e in entries}
    assert (by_tag["by-cli"]["run_id"], by_tag["by-sensor"]["run_id"], by_tag["by-graphql"]["run_id"]) == (
        cli_run,
        runs["sensor"],
        runs["graphql"],
    )
    assert by_tag["by-cli"]["file"] == "ws1/imports/people.csv"
    assert by_tag["by-sensor"]["file"] == "ws1/imports/sensor.csv"
    assert "missing.csv" in by_tag["broken"]["error"]
    assert all(e["started_at"] and e["ended_at"] and e["started_at"] <= e["ended_at"] for e in entries)
    assert all(e["undone_at"] is None and e["workspace_id"] == "ws1" for e in entries)

    code, out, _ = run_cli(["imports", "--workspace", "ws1", "--database-url", database_url], capsys)
    assert code == 0 and out.splitlines()[-1] == "4 imports"
    assert f"run {cli_run}" in out
