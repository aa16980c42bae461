"""Runs that carry several imports: per-file counts as if imported one by one in upload order,
isolation of file-level errors, default tags, batches across files and workspaces, the ledger,
run tags and the run's table of imports. On SQLite and PostgreSQL, in process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from contact_import_pipeline.app.runner import ImportRequest, local_instance, run_import
from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.defs.progress import describe_step_failure
from contact_import_pipeline.importing import stages
from contact_import_pipeline.storage.bucket import LocalFolderBucket
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME, file_tag, workspace_tag
from contact_import_tests.helpers import LOCAL_BUCKET, csv_bytes, e164, person, reconstructable_job, upload

HEADER = ["First Name", "Last Name", "Email", "Phone"]


def run_files(
    files: list[dict[str, Any]], database_url: str, batch_size: int | None = None, tags: dict[str, str] | None = None
) -> dg.ExecuteInProcessResult:
    """One run of ``import_job`` over ``files`` (FileImport fields), in this process."""
    config = launch.run_config(files, in_process=True, batch_size=batch_size)
    config["resources"]["contacts_db"] = {"config": {"url": database_url}}
    return defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
        run_config=config,
        instance=local_instance(),
        tags=tags if tags is not None else launch.run_tags([f["key"] for f in files], "graphql"),
        raise_on_error=False,
    )


def ledger(database_url: str, run_id: str) -> dict[str, LedgerEntry]:
    return {e.file: e for e in Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)}


def counts(entry: LedgerEntry | dict[str, Any]) -> tuple[Any, ...]:
    get = entry.get if isinstance(entry, dict) else lambda k: getattr(entry, k)
    return tuple(get(k) for k in ("status", "total", "imported", "updated", "skipped", "failed"))


def contacts_by_phone(database_url: str, workspace_id: str) -> dict[str, dict[str, Any]]:
    return {r["phone_number"]: r for r in ContactsStore(database_url).query_contacts(workspace_id)}


@pytest.mark.slow  # a run of five files, then the same files one run each (~15 s)
def test_each_file_counts_as_if_the_files_ran_one_after_another(database_url: str, tmp_path: Path) -> None:
    base = time.time() - 3600
    files = {
        "ws1/imports/a.csv": (csv_bytes(HEADER, [person(1), person(2), person(2), ["No", "Phone", "", ""]]), {}),
        "ws1/imports/b.csv": (csv_bytes(HEADER, [person(2, "b@example.com"), person(3)]), {"on_duplicate": "update"}),
        "ws1/imports/c.csv": (csv_bytes(HEADER, [person(3), person(4), ["Bad", "Phone", "", "12345"]]), {}),
        "ws2/imports/d.csv": (csv_bytes(HEADER, [person(1), person(2)]), {}),
        "ws1/imports/e.csv": (csv_bytes(HEADER, [person(2, "e@example.com"), person(5)]), {"on_duplicate": "update"}),
    }
    entries = []
    for n, (key, (data, options)) in enumerate(files.items()):
        upload(key, data, base + n)
        entries.append({"key": key, "import_tag": f"tag-{key[-5]}", "cleanup": "keep", **options})
    result = run_files(entries, database_url, batch_size=2)
    assert result.success
    together = ledger(database_url, result.run_id)

    # The same files, one run each, in upload order, into a fresh database.
    one_by_one_url = f"sqlite:///{tmp_path / 'one-by-one.db'}"
    alone: dict[str, LedgerEntry] = {}
    for entry in entries:
        single = run_files([entry], one_by_one_url, batch_size=2)
        assert single.success
        alone |= ledger(one_by_one_url, single.run_id)

    assert (
        {k: counts(e) for k, e in together.items()}
        == {k: counts(e) for k, e in alone.items()}
        == {
            "ws1/imports/a.csv": ("completed", 4, 2, 0, 1, 1),
            "ws1/imports/b.csv": ("completed", 2, 1, 1, 0, 0),
            "ws1/imports/c.csv": ("completed", 3, 1, 0, 1, 1),
            "ws2/imports/d.csv": ("completed", 2, 2, 0, 0, 0),
            "ws1/imports/e.csv": ("completed", 2, 1, 1, 0, 0),
        }
    )
    assert together["ws1/imports/c.csv"].skipped_by_reason == {"duplicate_existing": 1}
    for workspace_id in ("ws1", "ws2"):
        expected = contacts_by_phone(one_by_one_url, workspace_id)
        got = contacts_by_phone(database_url, workspace_id)
        fields = ("firstname", "lastname", "email", "tags", "metadata")
        assert {p: [r[f] for f in fields] for p, r in got.items()} == {
            p: [r[f] for f in fields] for p, r in expected.items()
        }
    ws1 = contacts_by_phone(database_url, "ws1")
    assert sorted(ws1) == [e164(i) for i in (1, 2, 3, 4, 5)]
    # a's contact, merged by b then e: the first email wins, both update tags are appended
    assert (ws1[e164(2)]["email"], ws1[e164(2)]["tags"], ws1[e164(2)]["metadata"]) == (
        "b@example.com",
        ["tag-a", "tag-b", "tag-e"],
        {"import_tag": "tag-a"},
    )


@pytest.mark.slow
def test_a_file_that_fails_as_a_file_fails_alone(database_url: str) -> None:
    upload("ws1/imports/good.csv", csv_bytes(HEADER, [person(1), person(2)]))
    upload("ws1/imports/binary.csv", b"\x00\x01\x02garbage\x00" * 50)
    upload("ws2/imports/no-phone.csv", csv_bytes(["Name", "Email"], [["Ada", "ada@example.com"]]))
    upload("ws2/imports/bad-region.csv", csv_bytes(HEADER, [person(3)]))
    upload("ws2/imports/bad-region.csv.json", json.dumps({"default_region": "XX"}).encode())
    files = [
        {"key": k}
        for k in (
            "ws1/imports/good.csv",
            "ws1/imports/binary.csv",
            "ws2/imports/no-phone.csv",
            "ws2/imports/bad-region.csv",
            "ws2/imports/missing.csv",
        )
    ] + [{"key": "../imports/x.csv"}]
    result = run_files(files, database_url)
    assert result.success
    entries = ledger(database_url, result.run_id)
    assert {k: (e.status, e.total, e.imported) for k, e in entries.items()} == {
        "ws1/imports/good.csv": ("completed", 2, 2),
        "ws1/imports/binary.csv": ("failed", 0, 0),
        "ws2/imports/no-phone.csv": ("failed", 0, 0),
        "ws2/imports/bad-region.csv": ("failed", 0, 0),
        "ws2/imports/missing.csv": ("failed", 0, 0),
        "../imports/x.csv": ("failed", 0, 0),
    }
    errors = {k: e.error for k, e in entries.items()}
    assert "binary" in errors["ws1/imports/binary.csv"]
    assert "phone" in errors["ws2/imports/no-phone.csv"]
    assert (
        errors["ws2/imports/bad-region.csv"]
        == "default_region 'XX' is not a known ISO 3166 region code (e.g. US, GB, DE)"
    )
    assert errors["ws2/imports/missing.csv"].startswith("ws2/imports/missing.csv: file not found in the bucket")
    assert errors["../imports/x.csv"].startswith("cannot import '../imports/x.csv'")
    assert sorted(contacts_by_phone(database_url, "ws1")) == [e164(1), e164(2)]
    # the good file is archived; the failed ones stay where they are for the user to fix
    assert (LOCAL_BUCKET / "ws1/imports/processed/good.csv").is_file() and (
        LOCAL_BUCKET / "ws1/imports/binary.csv"
    ).is_file()
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("contacts")]
    metadata = event.step_materialization_data.materialization.metadata
    assert (metadata["imports"].value, metadata["completed_imports"].value, metadata["failed_imports"].value) == (
        6,
        1,
        5,
    )
    table = metadata["imports_table"].value
    assert [(r.data["file"], r.data["status"], r.data["imported"]) for r in table.records] == [
        ("ws1/imports/good.csv", "completed", 2),
        ("ws1/imports/binary.csv", "failed", 0),
        ("ws2/imports/no-phone.csv", "failed", 0),
        ("ws2/imports/bad-region.csv", "failed", 0),
        ("ws2/imports/missing.csv", "failed", 0),
        ("../imports/x.csv", "failed", 0),
    ]


@pytest.mark.slow
def test_a_run_whose_every_file_fails_fails_without_automatic_retries(database_url: str) -> None:
    upload("ws1/imports/a.csv", csv_bytes(["Name"], [["Ada"]]))
    upload("ws1/imports/b.csv", b"")
    result = run_files([{"key": "ws1/imports/a.csv"}, {"key": "ws1/imports/b.csv"}], database_url)
    assert not result.success
    run = local_instance().get_run_by_id(result.run_id)
    assert run.tags["dagster/max_retries"] == "0"
    entries = ledger(database_url, result.run_id)
    assert [(e.file, e.status) for e in sorted(entries.values(), key=lambda e: e.position)] == [
        ("ws1/imports/a.csv", "failed"),
        ("ws1/imports/b.csv", "failed"),
    ]
    assert run.tags["contact_import/error"] == "; ".join(
        f"{e.file}: {e.error}" for e in sorted(entries.values(), key=lambda e: e.position)
    )


@pytest.mark.slow
def test_default_tags_come_from_each_files_upload_time_and_never_collide(database_url: str) -> None:
    same_second = 1767225600.25  # 2026-01-01T00:00:00Z
    for name in ("a", "b", "c"):
        upload(f"ws1/imports/{name}.csv", csv_bytes(HEADER, [person(ord(name))]), same_second)
    upload("ws2/imports/d.csv", csv_bytes(HEADER, [person(1)]), same_second)
    files = [{"key": f"ws1/imports/{n}.csv", "uploaded_at": same_second} for n in ("a", "b", "c")]
    files.append({"key": "ws2/imports/d.csv", "uploaded_at": same_second})
    first = run_files(files[:2], database_url)
    second = run_files(files[2:], database_url)
    assert first.success and second.success
    tags = {
        k: e.import_tag for k, e in (ledger(database_url, first.run_id) | ledger(database_url, second.run_id)).items()
    }
    assert tags == {
        "ws1/imports/a.csv": "import:2026-01-01T00:00:00Z",
        "ws1/imports/b.csv": "import:2026-01-01T00:00:01Z",  # ties broken in upload order
        "ws1/imports/c.csv": "import:2026-01-01T00:00:02Z",  # also across runs
        "ws2/imports/d.csv": "import:2026-01-01T00:00:00Z",  # another workspace has its own tags
    }
    assert [c["tags"] for c in ContactsStore(database_url).query_contacts("ws1", "import:2026-01-01T00:00:01Z")] == [
        ["import:2026-01-01T00:00:01Z"]
    ]


@pytest.mark.slow
def test_run_tags_name_every_file_and_workspace_and_a_reexecution_changes_nothing(database_url: str) -> None:
    keys = ["ws1/imports/a.csv", "ws2/imports/b.csv", "ws2/imports/c.csv"]
    for n, key in enumerate(keys):
        upload(key, csv_bytes(HEADER, [person(n), person(n + 10)]))
    result = run_files([{"key": k, "cleanup": "keep"} for k in keys], database_url, tags={})  # a bare Launchpad launch
    assert result.success
    instance = local_instance()
    run = instance.get_run_by_id(result.run_id)
    assert {
        k: v
        for k, v in run.tags.items()
        if k.startswith(("contact_import/ws.", "contact_import/file.", "contact_import/origin", "contact_import/files"))
    } == {
        "contact_import/origin": "launchpad",
        "contact_import/files": "3",
        "contact_import/ws.ws1": "ws1",
        "contact_import/ws.ws2": "ws2",
        "contact_import/file.ws1.imports.a.csv": "ws1/imports/a.csv",
        "contact_import/file.ws2.imports.b.csv": "ws2/imports/b.csv",
        "contact_import/file.ws2.imports.c.csv": "ws2/imports/c.csv",
    }
    by_workspace = instance.get_run_records(filters=dg.RunsFilter(tags={workspace_tag("ws2"): "ws2"}))
    by_file = instance.get_run_records(filters=dg.RunsFilter(tags={file_tag("ws2/imports/c.csv"): "ws2/imports/c.csv"}))
    assert [r.dagster_run.run_id for r in by_workspace] == [r.dagster_run.run_id for r in by_file] == [result.run_id]
    progress_tags = {
        k.split("/", 1)[1]: v
        for k, v in run.tags.items()
        if k.split("/", 1)[1] in ("status", "total", "imported", "processed")
    }
    assert progress_tags == {"status": "completed", "total": "6", "imported": "6", "processed": "6"}

    with dg.execute_job(
        reconstructable_job(),
        instance=instance,
        reexecution_options=dg.ReexecutionOptions(parent_run_id=result.run_id),
        run_config=run.run_config,  # a re-execution runs with its parent's config
    ) as again:
        assert again.success
    assert {k: counts(e) for k, e in ledger(database_url, result.run_id).items()} == dict.fromkeys(
        keys, ("completed", 2, 2, 0, 0, 0)
    )
    assert [len(contacts_by_phone(database_url, ws)) for ws in ("ws1", "ws2")] == [2, 4]


def test_cli_import_of_one_file_keeps_its_summary(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    source = tmp_path / "people.csv"
    source.write_bytes(csv_bytes(HEADER, [person(1), person(1), ["X", "Y", "", "nope"]]))
    summary = run_import(
        ImportRequest(source=str(source), workspace_id="ws1", import_tag="one"), database_url=database_url
    )
    assert {
        k: summary[k] for k in ("status", "file", "import_tag", "total", "imported", "skipped", "failed", "batches")
    } == {
        "status": "completed",
        "file": "ws1/imports/people.csv",
        "import_tag": "one",
        "total": 3,
        "imported": 1,
        "skipped": 1,
        "failed": 1,
        "batches": 1,
    }
    assert (summary["skipped_by_reason"], summary["failed_by_reason"]) == (
        {"duplicate_in_file": 1},
        {"invalid_phone": 1},
    )
    assert summary["rejects_file"].endswith("ws1/imports/rejects/people-rejects.csv")


def test_a_source_replaced_by_a_newer_upload_is_not_archived(database_url: str) -> None:
    """The sensor imports the newer version in a run of its own; archiving it here would lose it."""
    upload("ws1/imports/a.csv", csv_bytes(HEADER, [person(1)]))
    upload("ws1/imports/b.csv", csv_bytes(HEADER, [person(2)]))
    current = {o.key: o.version for o in LocalFolderBucket(root=str(LOCAL_BUCKET)).list_objects()}
    result = run_files(
        [
            {"key": "ws1/imports/a.csv", "version": "an-older-version"},
            {"key": "ws1/imports/b.csv", "version": current["ws1/imports/b.csv"]},
        ],
        database_url,
    )
    assert result.success
    entries = ledger(database_url, result.run_id)
    assert entries["ws1/imports/a.csv"].cleanup == "kept: a newer upload replaced it (the sensor imports that one)"
    assert entries["ws1/imports/b.csv"].cleanup == "archived to ws1/imports/processed/b.csv"
    assert (LOCAL_BUCKET / "ws1/imports/a.csv").is_file() and (LOCAL_BUCKET / "ws1/imports/processed/b.csv").is_file()


def test_a_run_without_files_fails_with_the_reason(tmp_path: Path) -> None:
    result = run_files([], f"sqlite:///{tmp_path / 'contacts.db'}")
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert (
        failure.step_failure_data.user_failure_data.description
        == "the run config lists no files (ops.raw_csv.config.files)"
    )
    assert local_instance().get_run_by_id(result.run_id).tags["dagster/max_retries"] == "0"


def _run_crashing_at_summarize(files: list[dict[str, Any]], database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """One run that stops after every batch landed, before any import completes; its run id."""

    def crash(*_args: object, **_kwargs: object) -> None:
        raise dg.Failure(description="worker lost", allow_retries=False)

    with monkeypatch.context() as patch:
        patch.setattr(stages, "summarize", crash)
        result = run_files(files, database_url, batch_size=1)
    assert not result.success
    return result.run_id


def _reexecute(run_id: str) -> dg.ExecuteJobResult:
    instance = local_instance()
    with dg.execute_job(
        reconstructable_job(),
        instance=instance,
        reexecution_options=dg.ReexecutionOptions(parent_run_id=run_id),
        run_config=instance.get_run_by_id(run_id).run_config,
        raise_on_error=False,
    ) as result:
        return result


@pytest.mark.slow
def test_a_file_read_before_a_crash_but_not_after_fails_the_run_not_the_import(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Marking it failed would hide the rows that landed; the run fails and is retried instead."""
    upload("ws1/imports/a.csv", csv_bytes(HEADER, [person(1), person(2)]))
    upload("ws1/imports/b.csv", csv_bytes(HEADER, [person(3)]))
    files = [{"key": "ws1/imports/a.csv", "cleanup": "keep"}, {"key": "ws1/imports/b.csv", "cleanup": "keep"}]
    first = _run_crashing_at_summarize(files, database_url, monkeypatch)
    assert {k: e.status for k, e in ledger(database_url, first).items()} == {k["key"]: "running" for k in files}
    saved = (LOCAL_BUCKET / "ws1/imports/b.csv").read_bytes()
    (LOCAL_BUCKET / "ws1/imports/b.csv").unlink()

    gone = _reexecute(first)
    assert not gone.success
    (failure,) = [e for e in gone.all_events if e.is_step_failure]
    message, _ = describe_step_failure(failure)
    assert message.startswith(
        "step raw_csv failed: contact_import_pipeline.importing.lifecycle.ImportInterrupted: ws1/imports/b.csv: "
    )
    assert message.endswith("(an earlier attempt of this run had read it)")
    assert {k: e.status for k, e in ledger(database_url, first).items()} == {k["key"]: "running" for k in files}

    upload("ws1/imports/b.csv", saved)
    back = _reexecute(first)
    assert back.success
    assert {k: counts(e) for k, e in ledger(database_url, first).items()} == {
        "ws1/imports/a.csv": ("completed", 2, 2, 0, 0, 0),
        "ws1/imports/b.csv": ("completed", 1, 1, 0, 0, 0),
    }
    assert sorted(contacts_by_phone(database_url, "ws1")) == [e164(1), e164(2), e164(3)]


@pytest.mark.slow
def test_a_file_whose_rows_changed_between_attempts_is_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload("ws1/imports/a.csv", csv_bytes(HEADER, [person(1), person(2)]))
    first = _run_crashing_at_summarize([{"key": "ws1/imports/a.csv", "cleanup": "keep"}], database_url, monkeypatch)
    upload("ws1/imports/a.csv", csv_bytes(HEADER, [person(1), person(2), person(4)]))  # replaced meanwhile
    again = _reexecute(first)
    assert not again.success
    (failure,) = [e for e in again.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description.startswith(
        "ws1/imports/a.csv: the file's rows changed since this run's first attempt (replaced upload?)"
    )
    assert local_instance().get_run_by_id(again.run_id).tags["dagster/max_retries"] == "0"
    assert sorted(contacts_by_phone(database_url, "ws1")) == [e164(1), e164(2)]
