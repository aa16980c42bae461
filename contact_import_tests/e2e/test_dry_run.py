"""``import --dry-run`` and run config ``dry_run: true``: the predicted counts and diagnoses equal
what the import then records, nothing is written, and the diagnoses are asset checks of the run.
On SQLite and PostgreSQL, through the command in this process."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from contact_import_pipeline.app.runner import local_instance
from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME
from contact_import_tests.helpers import EXPORTS, LOCAL_BUCKET, csv_bytes, person, run_cli, upload, write_csv

HEADER = ["First Name", "Last Name", "Email", "Phone"]
# What a dry run predicts and the import then records.
COMPARED = (
    "status",
    "workspace_id",
    "file",
    "total",
    "imported",
    "updated",
    "skipped",
    "failed",
    "batches",
    "skipped_by_reason",
    "failed_by_reason",
    "errors",
    "encoding",
    "delimiter",
    "mapping",
    "diagnoses",
    "multi_phone_rows",
)


def dry_then_real(
    source: Path, database_url: str, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``import --dry-run --json`` then ``import --json`` of the same file and workspace."""
    argv = ["import", str(source), "--workspace", "ws1", "--database-url", database_url, "--json", *options]
    dry = run_cli([*argv, "--dry-run"], capsys)
    assert dry.code == 0, dry.out + dry.err
    real = run_cli(argv, capsys)
    assert real.code == 0, real.out + real.err
    return dry.json(), real.json()


def nothing_written(database_url: str, tmp_path: Path) -> None:
    """No table in the contacts database; on SQLite, no database file at all."""
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "contacts.db").exists()
        return
    engine = sa.create_engine(database_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def uk_rows(count: int) -> list[list[str]]:
    return [[f"A{i}", "B", "", f"07911 {123000 + i}"] for i in range(count)]


@pytest.mark.parametrize("export", sorted(p.name for p in EXPORTS.glob("*.csv")))
def test_dry_run_predicts_every_real_export(database_url: str, export: str, capsys: pytest.CaptureFixture[str]) -> None:
    dry, real = dry_then_real(EXPORTS / export, database_url, capsys)
    assert (dry["dry_run"], real["dry_run"]) == (True, False)
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["total"], real["imported"], real["diagnoses"]) == (3, 3, [])
    assert sorted(c["phone_number"] for c in dry["sample_contacts"]) == sorted(
        c["phone_number"] for c in ContactsStore(database_url).query_contacts("ws1")
    )


def test_dry_run_writes_nothing(database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No contact, table, ledger entry, rejects file or cleanup: not even an empty SQLite file."""
    rows = [person(i) for i in range(8)] + [["Bad", "Phone", "", "12345"]]
    source = upload("ws1/imports/people.csv", csv_bytes(HEADER, rows))
    before = sorted(p.relative_to(LOCAL_BUCKET).as_posix() for p in LOCAL_BUCKET.rglob("*"))
    result = run_cli(
        ["import", "ws1/imports/people.csv", "--workspace", "ws1", "--database-url", database_url, "--dry-run"],
        capsys,
    )
    assert result.code == 0, result.err
    assert sorted(p.relative_to(LOCAL_BUCKET).as_posix() for p in LOCAL_BUCKET.rglob("*")) == before
    assert source.exists()
    nothing_written(database_url, tmp_path)
    lines = result.out.splitlines()
    assert lines[0] == "Dry run of ws1/imports/people.csv for workspace ws1: nothing was written"
    assert lines[1:6] == [
        "  read as utf-8, delimiter ','",
        "  columns: 'First Name' -> firstname, 'Last Name' -> lastname, 'Email' -> email, 'Phone' -> phone",
        "  unmapped: none",
        "  phone column: 'Phone' (its header is a phone header)",
        "  would import 8 | update 0 | skip 0 | fail 1 (invalid_phone 1) of 9 rows, in 1 batches",
    ]
    assert "  sample contacts:" in lines and "  no diagnosis: the file looks as intended" in lines


def test_the_wrong_region_is_diagnosed_alike_by_the_dry_run_and_the_import(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "uk.csv", HEADER, uk_rows(40) + [person(i) for i in range(10)])
    dry, real = dry_then_real(source, database_url, capsys)
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["imported"], real["failed"]) == (10, 40)
    assert [d["code"] for d in real["diagnoses"]] == ["default_region"]
    assert real["diagnoses"][0]["numbers"] == {
        "invalid_phones": 40,
        "valid_in_region": 40,
        "region": "GB",
        "default_region": "US",
        "estimated": 0,
    }
    # The fix it names works: with --region GB the rest imports and nothing is diagnosed.
    fixed = run_cli(
        ["import", str(source), "--workspace", "ws2", "--database-url", database_url, "--json", "--region", "GB"],
        capsys,
    ).json()
    assert (fixed["imported"], fixed["failed"], fixed["diagnoses"]) == (40, 10, [])
    # status and history carry the same lines.
    history = run_cli(["imports", "--workspace", "ws1", "--database-url", database_url], capsys)
    assert f"  ! {real['diagnoses'][0]['message']} [default_region]" in history.out.splitlines()


def test_a_second_import_is_predicted_skipped_and_diagnosed_as_imported_before(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "people.csv", HEADER, [person(i) for i in range(20)])
    first = run_cli(["import", str(source), "--workspace", "ws1", "--database-url", database_url, "--json"], capsys)
    assert first.json()["imported"] == 20
    dry, real = dry_then_real(source, database_url, capsys)
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["imported"], real["skipped"], real["skipped_by_reason"]) == (0, 20, {"duplicate_existing": 20})
    assert [d["code"] for d in real["diagnoses"]] == ["already_imported"]
    assert dry["sample_contacts"] == []


def test_update_policy_predicts_merged_and_new_rows(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_csv(tmp_path / "a.csv", HEADER, [person(i) for i in range(10)])
    run_cli(["import", str(first), "--workspace", "ws1", "--database-url", database_url], capsys)
    second = write_csv(tmp_path / "b.csv", HEADER, [person(i, email=f"p{i}@x.com") for i in range(5, 15)])
    dry, real = dry_then_real(second, database_url, capsys, "--on-duplicate", "update", "--batch-size", "3")
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["imported"], real["updated"], real["batches"]) == (5, 5, 4)


def test_an_explicit_mapping_is_shown_as_the_reason_for_the_phone_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["Name", "Fax", "Mobile"]
    rows = [[f"P {i}", "", person(i)[3]] for i in range(30)]
    source = write_csv(tmp_path / "fax.csv", header, rows)
    url = f"sqlite:///{tmp_path / 'contacts.db'}"
    argv = ["import", str(source), "--workspace", "ws1", "--database-url", url, "--json", "--dry-run"]
    dry = run_cli([*argv, "--map", "phone=Fax"], capsys).json()
    assert dry["mapping"] == {
        "fields": {"Name": "full_name (split into firstname, lastname)", "Fax": "phone"},
        "phone_column": {"header": "Fax", "why": "column_mapping names it", "fallbacks": []},
        "unmapped": ["Mobile"],
    }
    assert [d["code"] for d in dry["diagnoses"]] == ["phone_column", "mostly_failed"]
    assert (dry["imported"], dry["failed_by_reason"]) == (0, {"missing_phone": 30})
    bad = run_cli([*argv, "--map", "phone"], capsys)
    assert (bad.code, bad.json()["error"]) == (
        2,
        "--map 'phone': expected FIELD=HEADER, e.g. --map phone='Mobile Phone'",
    )


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, tuple[bool, str, dict[str, Any]]]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": (
            e.passed,
            e.severity.value,
            {k: v.value for k, v in e.metadata.items() if k != "diagnoses"},
        )
        for e in result.get_asset_check_evaluations()
    }


@pytest.mark.parametrize("dry_run", [False, True])
def test_diagnoses_are_warning_asset_checks_of_the_run(database_url: str, tmp_path: Path, dry_run: bool) -> None:
    """A run of two files, one misread: its checks warn with the numbers, and the run still succeeds."""
    upload("ws1/imports/uk.csv", _csv(uk_rows(30) + [person(i) for i in range(5)]))
    upload("ws1/imports/ok.csv", _csv([person(i) for i in range(100, 110)]))
    config = launch.run_config(
        [{"key": "ws1/imports/uk.csv"}, {"key": "ws1/imports/ok.csv"}], in_process=True, dry_run=dry_run
    )
    config["resources"]["contacts_db"] = {"config": {"url": database_url}}
    result = defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
        run_config=config, instance=local_instance(), raise_on_error=False
    )
    assert result.success
    flagged = {"imports_checked": 2, "imports_flagged": 1, "dry_run": dry_run}
    clean = {"imports_checked": 2, "imports_flagged": 0, "dry_run": dry_run}
    assert check_results(result) == {
        "normalized_contacts:phones_valid_in_default_region": (
            False,
            "WARN",
            flagged
            | {"invalid_phones": 30, "valid_in_region": 30, "region": "GB", "default_region": "US", "estimated": 0},
        ),
        "normalized_contacts:phone_column_holds_the_phones": (True, "WARN", clean),
        "normalized_contacts:read_with_the_right_delimiter_and_encoding": (True, "WARN", clean),
        "contacts:not_imported_before": (True, "WARN", clean),
        "contacts:rows_mostly_imported": (True, "WARN", clean),
    }
    (warned,) = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert warned.description == (
        "ws1/imports/uk.csv: 30 of 30 invalid phones are valid GB numbers: set default_region=GB (--region GB) "
        "and import the file again"
    )
    if dry_run:
        nothing_written(database_url, tmp_path)
    else:
        assert ContactsStore(database_url).count_contacts("ws1") == 15


def _csv(rows: list[list[str]]) -> bytes:
    return csv_bytes(HEADER, rows)


CRAFTED = {
    "delimiter": "Name, Last;Phone, mobile\n" + "".join(f"Smith, John {i};+1 212 555 {1000 + i}\n" for i in range(20)),
    "encoding": "First Name,Last Name,Phone\n" + "".join(f"JosÃ© {i},MÃ¼ller,{person(i)[3]}\n" for i in range(10)),
    "phone_column": "Name,Phone,Cell Number Private\n"
    + "".join(f"P {i},{'' if i > 2 else person(50 + i)[3]},{person(i)[3]}\n" for i in range(30)),
}


# Each crafted file's diagnoses: the one it was made for, and what its rows then do.
DIAGNOSED = {
    "delimiter": ["delimiter", "mostly_failed"],
    "encoding": ["encoding"],
    "phone_column": ["phone_column", "mostly_failed"],
}


@pytest.mark.parametrize("code", sorted(CRAFTED))
def test_crafted_misread_files_are_diagnosed_alike_by_the_dry_run_and_the_import(
    code: str, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / f"{code}.csv"
    source.write_text(CRAFTED[code], encoding="utf-8")
    options = ("--map", "phone=Phone") if code == "phone_column" else ()
    dry, real = dry_then_real(source, database_url, capsys, *options)
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert [d["code"] for d in real["diagnoses"]] == DIAGNOSED[code]


def test_cells_of_several_phones_are_predicted_and_counted(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ["Ada", "Lovelace", "", "(415) 555-2671 / (415) 555-2672"],
        ["Alan", "Turing", "", "415 555 2674; 415 555 2675"],
    ]
    source = write_csv(tmp_path / "multi.csv", HEADER, [*rows, person(1)])
    dry, real = dry_then_real(source, database_url, capsys)
    assert {k: dry[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["imported"], real["failed"], real["multi_phone_rows"]) == (3, 0, 2)


def test_a_dry_run_opens_sqlite_read_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No folder or file for a database that does not exist; an existing one keeps its journal mode
    and gets no -wal file (the import's engine would switch it to WAL and take the write lock)."""
    source = write_csv(tmp_path / "people.csv", HEADER, [person(i) for i in range(5)])
    missing = tmp_path / "new" / "contacts.db"
    argv = ["import", str(source), "--workspace", "ws1", "--dry-run", "--json", "--database-url"]
    assert run_cli([*argv, f"sqlite:///{missing}"], capsys).json()["imported"] == 5
    assert not missing.parent.exists()
    existing = tmp_path / "contacts.db"
    store = ContactsStore(f"sqlite:///{existing}")
    store.create_schema()
    store.dispose()
    with sqlite3.connect(existing) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    assert run_cli([*argv, f"sqlite:///{existing}"], capsys).json()["imported"] == 5
    with sqlite3.connect(existing) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert not Path(f"{existing}-wal").exists()
