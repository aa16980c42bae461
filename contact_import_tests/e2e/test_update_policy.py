"""on_duplicate=update: existing contacts get their empty fields filled and the tag, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from contact_import_pipeline.app.runner import ImportRequest, run_import
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_tests.helpers import run_cli, write_csv

HEADER = ["First Name", "Last Name", "Email", "Mobile Phone", "City"]


def _by_phone(store: ContactsStore, workspace: str) -> dict[str, dict]:
    return {r["phone_number"]: r for r in store.query_contacts(workspace)}


@pytest.mark.slow  # several whole imports (~10 s)
def test_update_fills_empty_fields_never_overwrites_and_tags(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = write_csv(
        tmp_path / "before.csv",
        HEADER,
        [
            ["Ada", "Lovelace", "", "(212) 555-0101", "London"],
            ["Alan", "", "alan@example.com", "(212) 555-0102", ""],
            ["Grace", "Hopper", "grace@example.com", "(212) 555-0103", "Arlington"],
        ],
    )
    first = run_import(
        ImportRequest(source=str(before), workspace_id="ws1", import_tag="before"), database_url=database_url
    )
    assert (first["imported"], first["updated"], first["skipped"]) == (3, 0, 0)
    # Another workspace holds the same phone with empty fields: it must not be touched.
    run_import(ImportRequest(source=str(before), workspace_id="ws2", import_tag="other"), database_url=database_url)

    update = write_csv(
        tmp_path / "update.csv",
        HEADER,
        [
            ["Augusta", "King", "ada@example.com", "(212) 555-0101", "Paris"],  # email filled, rest kept
            ["Alan", "Turing", "other@example.com", "(212) 555-0102", "Wilmslow"],  # lastname, city filled
            ["Grace", "Hopper", "grace@example.com", "(212) 555-0103", ""],  # nothing to fill
            ["Linus", "Torvalds", "linus@example.com", "(212) 555-0104", "Helsinki"],  # new
            ["Dup", "Row", "dup@example.com", "(212) 555-0104", ""],  # duplicate in file
            ["No", "Phone", "", "", ""],  # failed
        ],
    )
    result = run_cli(
        [
            "import",
            str(update),
            "--workspace",
            "ws1",
            "--tag",
            "upd",
            "--on-duplicate",
            "update",
            "--database-url",
            database_url,
            "--json",
        ],
        capsys,
    )
    assert result.code == 0, result.out
    summary = result.json()
    assert {k: summary[k] for k in ("total", "imported", "updated", "skipped", "failed")} == {
        "total": 6,
        "imported": 1,
        "updated": 3,
        "skipped": 1,
        "failed": 1,
    }
    assert summary["skipped_by_reason"] == {"duplicate_in_file": 1}

    store = ContactsStore(database_url)
    rows = _by_phone(store, "ws1")
    assert len(rows) == 4
    ada, alan, grace, linus = (rows[f"+1212555010{i}"] for i in range(1, 5))
    assert (ada["firstname"], ada["lastname"], ada["email"], ada["city"]) == (
        "Ada",
        "Lovelace",
        "ada@example.com",
        "London",
    )
    assert (alan["firstname"], alan["lastname"], alan["email"], alan["city"]) == (
        "Alan",
        "Turing",
        "alan@example.com",
        "Wilmslow",
    )
    assert (grace["lastname"], grace["email"], grace["city"]) == ("Hopper", "grace@example.com", "Arlington")
    assert [ada["tags"], alan["tags"], grace["tags"], linus["tags"]] == [["before", "upd"]] * 3 + [["upd"]]
    # Merged contacts keep the metadata of the import that created them (so undo of "upd" spares them).
    assert [r["metadata"]["import_tag"] for r in (ada, alan, grace, linus)] == ["before", "before", "before", "upd"]
    other = _by_phone(store, "ws2")
    assert other["+12125550101"]["email"] in ("", None) and other["+12125550101"]["tags"] == ["other"]

    # Importing the same file again in update mode adds no duplicate tag and creates nothing.
    again = run_import(
        ImportRequest(source=str(update), workspace_id="ws1", import_tag="upd", on_duplicate="update"),
        database_url=database_url,
    )
    assert (again["imported"], again["updated"], again["skipped"], again["failed"]) == (0, 4, 1, 1)
    assert _by_phone(store, "ws1")["+12125550101"]["tags"] == ["before", "upd"]
