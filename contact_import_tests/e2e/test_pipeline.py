"""The whole import path, on SQLite and PostgreSQL, with exact counts and contents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from contact_import_pipeline.app import cli
from contact_import_pipeline.app.runner import ImportRequest, run_import
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_tests.helpers import EXPORTS, NUMBERED_HEADER, numbered_rows, run_cli, write_csv

SAMPLE = Path(cli.__file__).parents[1] / "sample" / "sample-contacts.csv"
SAMPLE_PHONES = {
    "+12024561111",
    "+14155552671",
    "+442079460958",
    "+17578641000",
    "+525552083200",
    "+33144271410",
    "+13125550199",
}


def test_sample_file_counts_contents_and_rejects(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        [
            "import",
            str(SAMPLE),
            "--workspace",
            "ws1",
            "--tag",
            "spring-fair",
            "--board-phone",
            "(202) 456-1414",
            "--database-url",
            database_url,
            "--json",
        ],
        capsys,
    )
    assert code == 0, out
    summary = json.loads(out)
    assert {
        k: summary[k]
        for k in ("status", "workspace_id", "import_tag", "total", "imported", "skipped", "failed", "batches")
    } == {
        "status": "completed",
        "workspace_id": "ws1",
        "import_tag": "spring-fair",
        "total": 10,
        "imported": 7,
        "skipped": 1,
        "failed": 2,
        "batches": 1,
    }
    assert summary["skipped_by_reason"] == {"duplicate_in_file": 1}
    assert summary["failed_by_reason"] == {"invalid_phone": 1, "missing_phone": 1}
    assert [(e["row"], e["reason"]) for e in summary["errors"]] == [(9, "missing_phone"), (10, "invalid_phone")]
    assert summary["run_id"]

    store = ContactsStore(database_url)
    rows = store.query_contacts("ws1")
    assert {r["phone_number"] for r in rows} == SAMPLE_PHONES
    assert all(r["tags"] == ["spring-fair"] for r in rows)
    assert all(r["metadata"]["board_phone_number"] == "+12024561414" for r in rows)
    assert all(r["conversation_status"] == "New" and r["opt_in_through"] == "manual" for r in rows)
    by_phone = {r["phone_number"]: r for r in rows}
    assert (by_phone["+12024561111"]["firstname"], by_phone["+12024561111"]["lastname"]) == ("Ada", "Lovelace")
    assert by_phone["+525552083200"]["city"] == "Ciudad de México"
    assert by_phone["+13125550199"]["lead_source"] == "Trade show, booth 4"

    rejects = Path(summary["rejects_file"]).read_text(encoding="utf-8-sig").splitlines()
    assert rejects[0] == "First Name,Last Name,Email,Mobile Phone,City,State,Lead Source,row,reason,detail"
    assert [line.split(",")[-3:-1] for line in rejects[1:]] == [
        ["8", "duplicate_in_file"],
        ["9", "missing_phone"],
        ["10", "invalid_phone"],
    ]


def test_reimport_skips_every_row_and_inserts_nothing(database_url: str) -> None:
    first = run_import(ImportRequest(source=str(SAMPLE), workspace_id="ws1"), database_url=database_url)
    second = run_import(ImportRequest(source=str(SAMPLE), workspace_id="ws1"), database_url=database_url)
    assert (first["imported"], first["skipped"], first["failed"]) == (7, 1, 2)
    assert (second["imported"], second["skipped"], second["failed"]) == (0, 8, 2)
    assert second["skipped_by_reason"] == {"duplicate_existing": 7, "duplicate_in_file": 1}
    assert ContactsStore(database_url).count_contacts("ws1") == 7


def test_default_import_tag_is_utc_iso_seconds(database_url: str) -> None:
    summary = run_import(ImportRequest(source=str(SAMPLE), workspace_id="ws1"), database_url=database_url)
    assert re.fullmatch(r"import:\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", summary["import_tag"])
    tagged = ContactsStore(database_url).query_contacts("ws1", summary["import_tag"])
    assert len(tagged) == 7
    assert all("board_phone_number" not in r["metadata"] for r in tagged)


@pytest.mark.parametrize("size,batch_size,batches", [(10, 50, 1), (500, 50, 10), (5000, 1000, 5)])
def test_checklist_sizes_exact(database_url: str, tmp_path: Path, size: int, batch_size: int, batches: int) -> None:
    path = write_csv(tmp_path / f"c{size}.csv", NUMBERED_HEADER, numbered_rows(size))
    summary = run_import(
        ImportRequest(source=str(path), workspace_id="big", batch_size=batch_size), database_url=database_url
    )
    assert (summary["total"], summary["imported"], summary["skipped"], summary["failed"], summary["batches"]) == (
        size,
        size,
        0,
        0,
        batches,
    )
    assert ContactsStore(database_url).count_contacts("big") == size


def test_dedup_never_crosses_workspaces(database_url: str) -> None:
    a = run_import(ImportRequest(source=str(SAMPLE), workspace_id="wsa"), database_url=database_url)
    b = run_import(ImportRequest(source=str(SAMPLE), workspace_id="wsb"), database_url=database_url)
    assert a["imported"] == b["imported"] == 7
    store = ContactsStore(database_url)
    assert {r["phone_number"] for r in store.query_contacts("wsb")} == SAMPLE_PHONES


def test_header_only_file_is_a_completed_import_of_zero_rows(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "empty.csv", ["Name", "Phone"], [])
    code, out, _ = run_cli(
        ["import", str(path), "--workspace", "ws1", "--database-url", database_url, "--json"], capsys
    )
    assert code == 0
    summary = json.loads(out)
    assert (summary["status"], summary["total"], summary["imported"], summary["batches"]) == ("completed", 0, 0, 0)


def test_file_level_error_exits_2_and_inserts_nothing(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(tmp_path / "nophone.csv", ["Name", "Email"], [["Ada", "ada@example.com"]])
    code, out, _ = run_cli(
        ["import", str(path), "--workspace", "ws1", "--database-url", database_url, "--json"], capsys
    )
    assert code == 2
    result = json.loads(out)
    assert result["status"] == "failed"
    assert "nophone.csv" in result["error"] and "no phone column" in result["error"]
    assert "Name" in result["error"] and "Email" in result["error"]
    store = ContactsStore(database_url)
    store.create_schema()
    assert store.count_contacts("ws1") == 0


def test_invalid_options_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["import", str(SAMPLE), "--workspace", "ws1", "--board-phone", "123", "--json"], capsys)
    assert code == 2
    assert "board_phone_number '123' is not a valid phone number" in json.loads(out)["error"]
    code, out, _ = run_cli(["import", str(SAMPLE), "--workspace", "../etc", "--json"], capsys)
    assert code == 2
    assert "workspace id '../etc' is invalid" in json.loads(out)["error"]


def test_contacts_command_lists_by_tag(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_import(ImportRequest(source=str(SAMPLE), workspace_id="ws1", import_tag="t1"), database_url=database_url)
    code, out, _ = run_cli(
        ["contacts", "--workspace", "ws1", "--tag", "t1", "--database-url", database_url, "--json"], capsys
    )
    assert code == 0
    assert {r["phone_number"] for r in json.loads(out)} == SAMPLE_PHONES
    code, out, _ = run_cli(
        ["contacts", "--workspace", "ws1", "--tag", "other", "--database-url", database_url, "--json"], capsys
    )
    assert json.loads(out) == []


def test_values_stay_text(database_url: str, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "zip.csv",
        ["First Name", "Last Name", "Phone", "Zip", "Email"],
        [["Ann", "Lee", "+1 212 200 0001", "02134", '=HYPERLINK("x")']],
    )
    run_import(ImportRequest(source=str(path), workspace_id="ws1"), database_url=database_url)
    [row] = ContactsStore(database_url).query_contacts("ws1")
    assert (row["zip"], row["email"], row["phone_number"]) == ("02134", '=HYPERLINK("x")', "+12122000001")


EXPORT_CONTACTS = {
    "+12025550101": ("Ann", "Lee", "ann@example.com"),
    "+12025550102": ("Bob", "Stone", "bob@example.com"),
    "+12025550103": ("Cleo", "Park", "cleo@example.com"),
}
GERMAN_OUTLOOK_CONTACTS = {
    "+4915123456789": ("Ann", "Lee", "ann@example.com"),
    "+4930901820": ("Bob", "Stone", "bob@example.com"),
    "+12025550103": ("Cleo", "Park", "cleo@example.com"),
}


@pytest.mark.parametrize("export", sorted(p.name for p in EXPORTS.glob("*.csv")))
def test_real_export_files_import_whole(database_url: str, export: str) -> None:
    """Header rows of Google, Outlook (desktop, web, German), HubSpot, Salesforce, Mailchimp, Zoho,
    Pipedrive and vCard exports: every row imported with its name, email and mobile number."""
    summary = run_import(ImportRequest(source=str(EXPORTS / export), workspace_id="ws1"), database_url=database_url)
    assert (summary["total"], summary["imported"], summary["skipped"], summary["failed"]) == (3, 3, 0, 0)
    stored = {
        r["phone_number"]: (r["firstname"], r["lastname"], r["email"])
        for r in ContactsStore(database_url).query_contacts("ws1")
    }
    assert stored == (GERMAN_OUTLOOK_CONTACTS if export == "outlook_de.csv" else EXPORT_CONTACTS)


def test_messy_name_and_phone_cells_import(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full-name column split by nameparser, and phone cells listing several numbers: the first
    valid one is the phone, the other valid ones go into metadata.other_phones."""
    path = write_csv(
        tmp_path / "messy.csv",
        ["Full Name", "Phone"],
        [
            ["Dr. Ada Lovelace", "(415) 555-2671 / (415) 555-2672"],
            ["John Smith Jr.", "415 555 2674; 415 555 2675"],
            ["Lovelace, Ada", "12345 or (415) 555-2676"],
            ["Grace Hopper", "+1 415 555 2677"],
            ["Nobody", "call me / later"],
        ],
    )
    code, out, _ = run_cli(
        ["import", str(path), "--workspace", "ws1", "--tag", "messy", "--database-url", database_url, "--json"],
        capsys,
    )
    assert code == 0, out
    summary = json.loads(out)
    assert (summary["total"], summary["imported"], summary["failed"]) == (5, 4, 1)
    assert [(e["row"], e["reason"], e["detail"]) for e in summary["errors"]] == [
        (6, "invalid_phone", "not a valid phone number: 'call me / later'")
    ]
    stored = {
        r["phone_number"]: (r["firstname"], r["lastname"], r["metadata"])
        for r in ContactsStore(database_url).query_contacts("ws1")
    }
    assert stored == {
        "+14155552671": ("Ada", "Lovelace", {"import_tag": "messy", "other_phones": ["+14155552672"]}),
        "+14155552674": ("John", "Smith Jr.", {"import_tag": "messy", "other_phones": ["+14155552675"]}),
        "+14155552676": ("Ada", "Lovelace", {"import_tag": "messy"}),
        "+14155552677": ("Grace", "Hopper", {"import_tag": "messy"}),
    }
