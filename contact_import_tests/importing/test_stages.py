"""importing.stages, without Dagster: per-file dedupe in upload order across the files of a run,
batches that span files, and a summary that refuses to add up what the database did not record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contact_import_pipeline.defs.config import FileImport
from contact_import_pipeline.importing import stages
from contact_import_pipeline.importing.options import resolve_options
from contact_import_pipeline.model import BatchOutcome
from contact_import_pipeline.reading.csv_file import read_csv_bytes
from contact_import_tests.helpers import csv_bytes, e164, person

HEADER = ["First Name", "Last Name", "Email", "Phone"]
KEY = "ws1/imports/file.csv"
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _normalized(position: int, key: str, rows: list[list[str]], **options: Any) -> stages.NormalizedImport:
    resolved = resolve_options(FileImport(key=key, import_tag=f"t{position}", **options), {}, STARTED)
    raw = stages.RawImport(f"run:{key}", position, resolved, key, read_csv_bytes(csv_bytes(HEADER, rows), key))
    return stages.normalize(raw)


def test_a_later_file_of_the_same_workspace_sees_the_earlier_files_phones_as_existing() -> None:
    a = _normalized(0, "ws1/imports/a.csv", [person(1), person(2), person(2)])
    b = _normalized(1, "ws1/imports/b.csv", [person(2), person(3), person(9)])
    c = _normalized(2, "ws2/imports/c.csv", [person(2)])  # another workspace: its own contact
    looked_up: list[tuple[str, list[str]]] = []

    def lookup(workspace_id: str, phones: Any) -> set[str]:
        looked_up.append((workspace_id, sorted(phones)))
        return {e164(9)} if workspace_id == "ws1" else set()

    da, db, dc = stages.dedupe([b, c, a], lookup)  # returned in upload order whatever the input order
    assert [d.options.key for d in (da, db, dc)] == ["ws1/imports/a.csv", "ws1/imports/b.csv", "ws2/imports/c.csv"]
    assert list(da.contacts["phone_number"]) == [e164(1), e164(2)]
    assert list(db.contacts["phone_number"]) == [e164(3)]
    assert list(dc.contacts["phone_number"]) == [e164(2)]
    assert [(r.row, r.reason, r.detail) for r in da.rejects] == [
        (4, "duplicate_in_file", f"same phone {e164(2)} as row 3")
    ]
    assert [(r.row, r.reason, r.detail) for r in db.rejects] == [
        (
            2,
            "duplicate_existing",
            f"{e164(2)} already exists in workspace ws1 (added by ws1/imports/a.csv earlier in this run)",
        ),
        (4, "duplicate_existing", f"{e164(9)} already exists in workspace ws1"),
    ]
    # one lookup per workspace, of the first copies only
    assert sorted(looked_up) == [("ws1", sorted([e164(1), e164(2), e164(2), e164(3), e164(9)])), ("ws2", [e164(2)])]


def test_an_update_file_merges_after_the_earlier_file_of_the_run_inserted_the_phone() -> None:
    a = _normalized(0, "ws1/imports/a.csv", [person(1), person(2)])
    b = _normalized(1, "ws1/imports/b.csv", [person(2, "two@example.com"), person(3)], on_duplicate="update")
    c = _normalized(2, "ws1/imports/c.csv", [person(2, "again@example.com")], on_duplicate="update")
    da, db, dc = stages.dedupe([a, b, c], lambda ws, phones: set())
    assert list(db.contacts["phone_number"]) == [e164(3)]
    assert list(zip(db.later["phone_number"], db.later["phase"], strict=False)) == [(e164(2), 2)]
    assert list(zip(dc.later["phone_number"], dc.later["phase"], strict=False)) == [(e164(2), 3)]
    first, later = stages.plan_batches([da, db, dc], 10, "run"), stages.later_batches([da, db, dc], 10, "run")
    assert [(b.index, b.update, [s.import_id for s in b.imports], len(b.frame)) for b in first] == [
        (0, False, ["run:ws1/imports/a.csv"], 2),
        (1, True, ["run:ws1/imports/b.csv"], 1),
    ]
    assert [(b.index, b.update, [s.import_id for s in b.imports], list(b.frame["phone_number"])) for b in later] == [
        (2, True, ["run:ws1/imports/b.csv"], [e164(2)]),
        (3, True, ["run:ws1/imports/c.csv"], [e164(2)]),
    ]
    assert stages.batch_membership([da, db, dc], 10) == (
        2,
        {"run:ws1/imports/a.csv": [0], "run:ws1/imports/b.csv": [1, 2], "run:ws1/imports/c.csv": [3]},
    )


def test_batches_hold_rows_of_several_files_in_upload_order() -> None:
    items = [_normalized(i, f"ws{i % 2}/imports/f{i}.csv", [person(10 * i + j) for j in range(3)]) for i in range(4)]
    deduped = stages.dedupe(items, lambda ws, phones: set())
    first = stages.plan_batches(deduped, 5, "run")
    assert stages.later_batches(deduped, 5, "run") == []
    shape = [
        ([s.import_id.rsplit("/", 1)[1] for s in b.imports], list(b.frame["import"]), list(b.frame["row"]))
        for b in first
    ]
    assert shape == [
        (["f0.csv", "f1.csv"], [0, 0, 0, 1, 1], [2, 3, 4, 2, 3]),
        (["f1.csv", "f2.csv", "f3.csv"], [0, 1, 1, 1, 2], [4, 2, 3, 4, 2]),
        (["f3.csv"], [0, 0], [3, 4]),
    ]
    assert all(b.count == 3 and b.total == 12 for b in first)
    assert stages.batch_membership(deduped, 5)[1] == {
        "run:ws0/imports/f0.csv": [0],
        "run:ws1/imports/f1.csv": [0, 1],
        "run:ws0/imports/f2.csv": [1],
        "run:ws1/imports/f3.csv": [1, 2],
    }


def _deduped(text: bytes) -> stages.DedupedImport:
    options = resolve_options(FileImport(key=KEY, import_tag="t"), {}, STARTED)
    table = read_csv_bytes(text, "file.csv")
    raw = stages.RawImport(import_id="imp", position=0, options=options, source="file.csv", table=table)
    (deduped,) = stages.dedupe([stages.normalize(raw)], lambda ws, phones: set())
    return deduped


def test_summarize_refuses_missing_batches_and_bad_sums() -> None:
    deduped = _deduped(b"name,phone\nA,2125550001\nB,2125550002\nC,2125550003\nD,\n")
    first = stages.plan_batches([deduped], 2, "run")
    assert stages.later_batches([deduped], 2, "run") == []
    assert [(b.index, b.count, len(b.frame), b.frame["row"].tolist(), b.failed_before) for b in first] == [
        (0, 2, 2, [2, 3], 1),
        (1, 2, 1, [4], 1),
    ]
    assert stages.batch_membership([deduped], 2) == (2, {"imp": [0, 1]})
    one = BatchOutcome(rows=2, imported=2, skipped=0, updated=0, conflict_rows=[])
    with pytest.raises(stages.AccountingError, match=r"1 of 2 planned batches have no recorded outcome \(batch 1\)"):
        stages.summarize(deduped, [0, 1], {0: one}, 0.0)
    wrong = BatchOutcome(rows=1, imported=5, skipped=0, updated=0, conflict_rows=[])
    with pytest.raises(stages.AccountingError, match="counts do not add up"):
        stages.summarize(deduped, [0, 1], {0: one, 1: wrong}, 0.0)
    late = BatchOutcome(rows=1, imported=0, skipped=1, updated=0, conflict_rows=[4])
    summary = stages.summarize(deduped, [0, 1], {0: one, 1: late}, 0.0)
    assert (summary.imported, summary.skipped, summary.failed, summary.batches) == (2, 1, 1, 2)
    assert [(r.row, r.reason, r.values) for r in summary.rejects] == [
        (4, "duplicate_existing", ["C", "2125550003"]),
        (5, "missing_phone", ["D", ""]),
    ]
