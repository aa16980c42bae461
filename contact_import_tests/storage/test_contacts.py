"""storage.contacts: batches land once, record their outcome per import, keep values exactly and
merge late conflicts in update mode; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from contact_import_pipeline.model import BATCH_COLUMNS, BatchImport, ImportProgress
from contact_import_pipeline.storage import writers
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import ImportClaim, Ledger
from contact_import_tests.helpers import batch_frame, insert_rows

STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _row(phone: str, first: str = "A") -> tuple[str, ...]:
    values = dict.fromkeys(BATCH_COLUMNS, "") | {"firstname": first, "lastname": "B", "phone_number": phone}
    return tuple(values[c] for c in BATCH_COLUMNS)


def test_store_batch_is_idempotent_and_records_outcome_per_import(database_url: str) -> None:
    store = ContactsStore(database_url)
    store.create_schema()
    store.create_schema()  # creating twice is harmless
    seen: list[ImportProgress] = []
    a = BatchImport("run1:ws1/imports/a.csv", "ws1", "t", {"import_tag": "t", "board_phone_number": "+12024561414"})
    b = BatchImport("run1:ws2/imports/b.csv", "ws2", "u", {"import_tag": "u"})
    Ledger(store).claim([_claim(a, 0), _claim(b, 1)], run_id="run1", root_run_id="run1")

    def batch(rows: list[tuple[str, ...]], lines: list[int], imports: list[int]) -> pd.DataFrame:
        return batch_frame(rows, lines).assign(**{"import": imports})

    first = store.insert_batch(
        run_key="run1",
        batch_index=0,
        imports=[a, b],
        on_progress=seen.append,
        batch=batch([_row("+12125550001"), _row("+12125550002"), _row("+12125550001")], [2, 3, 2], [0, 0, 1]),
    )
    again = store.insert_batch(
        run_key="run1",
        batch_index=0,
        imports=[a, b],
        batch=batch([_row("+12125550001"), _row("+12125550002"), _row("+12125550001")], [2, 3, 2], [0, 0, 1]),
    )
    other = store.insert_batch(
        run_key="run1",
        batch_index=1,
        imports=[a],
        on_progress=seen.append,
        batch=batch([_row("+12125550002"), _row("+12125550003")], [4, 5], [0, 0]),
    )
    assert {k: (o.imported, o.skipped, o.conflict_rows) for k, o in first.items()} == {
        a.import_id: (2, 0, []),
        b.import_id: (1, 0, []),
    }
    assert again == first
    assert (other[a.import_id].imported, other[a.import_id].skipped, other[a.import_id].conflict_rows) == (1, 1, [4])
    assert [(p.batches, p.imported, p.skipped) for p in seen] == [(1, 3, 0), (2, 4, 1)]
    recorded = store.recorded_batches([a.import_id, b.import_id])
    assert {k: sorted(v) for k, v in recorded.items()} == {a.import_id: [0, 1], b.import_id: [0]}
    assert (store.count_contacts("ws1"), store.count_contacts("ws2")) == (3, 1)
    assert store.existing_phones("ws1", ["+12125550001", "+19999999999"]) == {"+12125550001"}
    assert store.existing_phones("ws1", ["+12125550001"], planned=frozenset({"+12125550001"})) == set()
    assert store.existing_phones("ws3", ["+12125550001"]) == set()
    rows = store.query_contacts("ws1", "t")
    assert [r["metadata"] for r in rows] == [{"import_tag": "t", "board_phone_number": "+12024561414"}] * 3
    assert [r["tags"] for r in store.query_contacts("ws2")] == [["u"]]


def _claim(share: BatchImport, position: int) -> ImportClaim:
    return ImportClaim(
        share.import_id,
        position,
        share.import_id.split(":", 1)[1],
        "",
        share.workspace_id,
        "f.csv",
        share.import_tag,
        STARTED,
        "cli",
    )


def test_store_keeps_awkward_values_exactly(database_url: str) -> None:
    """Quotes, separators, newlines, backslashes, '' and a line reading \\. (COPY's end-of-data
    marker) survive the CSV stream into PostgreSQL unchanged."""
    awkward = [
        'say "hi", then leave',
        "two\nlines\r\nand \\N",
        "tab\there; pipe|",
        "",
        "Zoë 李 Ωμέγα 🙂",
        "\\",
        "NULL",
        "first line\n\\.\nafter the marker",
        "\\.",
        'a,"b",c',
    ]
    store = ContactsStore(database_url)
    store.create_schema()
    rows = [
        tuple(
            {"firstname": value, "lastname": "", "st_address": value, "phone_number": f"+1212555{i:04d}"}.get(c, "")
            for c in BATCH_COLUMNS
        )
        for i, value in enumerate(awkward)
    ]
    outcome = insert_rows(store, rows, workspace_id="ws1", import_id="awkward", import_tag="t")
    assert (outcome.imported, outcome.skipped, outcome.conflict_rows) == (len(awkward), 0, [])
    stored = {r["phone_number"]: r for r in store.query_contacts("ws1")}
    assert [stored[f"+1212555{i:04d}"]["firstname"] for i in range(len(awkward))] == awkward
    assert [stored[f"+1212555{i:04d}"]["st_address"] for i in range(len(awkward))] == awkward
    assert {stored[p]["lastname"] for p in stored} == {""} and {stored[p]["email"] for p in stored} == {""}


def test_late_conflict_under_update_is_merged(database_url: str) -> None:
    """A phone that appears between dedupe and insert is merged, not skipped, in update mode."""
    store = ContactsStore(database_url)
    store.create_schema()
    row = ("Ada", "", "", "", "", "", "", "", "", "", "", "+12125550101")
    first = insert_rows(store, [row], workspace_id="ws1", import_id="a:1", import_tag="t1")
    assert (first.imported, first.updated, first.skipped) == (1, 0, 0)
    filled = ("Ada", "Lovelace", "ada@example.com", "", "", "", "", "", "", "", "", "+12125550101")
    second = insert_rows(store, [filled], workspace_id="ws1", import_id="b:1", import_tag="t2", update=True)
    assert (second.imported, second.updated, second.skipped, second.conflict_rows) == (0, 1, 0, [])
    skipped = insert_rows(store, [filled], workspace_id="ws1", import_id="c:1", import_tag="t3")
    assert (skipped.imported, skipped.updated, skipped.skipped, skipped.conflict_rows) == (0, 0, 1, [2])
    (contact,) = store.query_contacts("ws1")
    assert (contact["lastname"], contact["email"], contact["tags"]) == ("Lovelace", "ada@example.com", ["t1", "t2"])
    assert store.recorded_batches(["b:1"])["b:1"][0].updated == 1


def _share(tag: str) -> BatchImport:
    return BatchImport(f"{tag}:ws1/imports/f.csv", "ws1", tag, {"import_tag": tag})


def _with_other_phones(rows: list[tuple[str, ...]], other_phones: list[str]) -> pd.DataFrame:
    return batch_frame(rows, range(2, 2 + len(rows))).assign(other_phones=other_phones)


def test_other_phones_go_into_created_contacts_metadata(database_url: str) -> None:
    """Straight into contacts (PostgreSQL's COPY) and through the stage after a late conflict."""
    store = ContactsStore(database_url)
    store.create_schema()
    batch = _with_other_phones(
        [_row("+12125550001"), _row("+12125550002"), _row("+12125550003")],
        ["+12125550011,+12125550012", "", "+12125550013"],
    )
    outcome = store.insert_batch(run_key="r1", batch_index=0, imports=[_share("t1")], batch=batch)
    assert outcome[_share("t1").import_id].imported == 3
    late = _with_other_phones([_row("+12125550003"), _row("+12125550004")], ["+12125550099", "+12125550014"])
    outcome = store.insert_batch(run_key="r2", batch_index=0, imports=[_share("t2")], batch=late)
    assert (outcome[_share("t2").import_id].imported, outcome[_share("t2").import_id].skipped) == (1, 1)
    assert {r["phone_number"]: r["metadata"] for r in store.query_contacts("ws1")} == {
        "+12125550001": {"import_tag": "t1", "other_phones": ["+12125550011", "+12125550012"]},
        "+12125550002": {"import_tag": "t1"},
        "+12125550003": {"import_tag": "t1", "other_phones": ["+12125550013"]},
        "+12125550004": {"import_tag": "t2", "other_phones": ["+12125550014"]},
    }


def test_update_adds_other_phones_only_to_a_contact_without_them(database_url: str) -> None:
    store = ContactsStore(database_url)
    store.create_schema()
    first = _with_other_phones([_row("+12125550001"), _row("+12125550002")], ["+12125550011", ""])
    store.insert_batch(run_key="r1", batch_index=0, imports=[_share("t1")], batch=first)
    merge = _with_other_phones(
        [_row("+12125550001"), _row("+12125550002"), _row("+12125550003"), _row("+12125550004")],
        ["+12125550099", "+12125550022,+12125550023", "+12125550033", ""],
    )
    outcome = store.insert_batch(run_key="r2", batch_index=0, imports=[_share("t2")], batch=merge, update=True)
    share = outcome[_share("t2").import_id]
    assert (share.imported, share.updated, share.skipped) == (2, 2, 0)
    stored = {r["phone_number"]: r for r in store.query_contacts("ws1")}
    assert {phone: r["metadata"] for phone, r in stored.items()} == {
        "+12125550001": {"import_tag": "t1", "other_phones": ["+12125550011"]},  # never overwritten
        "+12125550002": {"import_tag": "t1", "other_phones": ["+12125550022", "+12125550023"]},
        "+12125550003": {"import_tag": "t2", "other_phones": ["+12125550033"]},
        "+12125550004": {"import_tag": "t2"},
    }
    assert stored["+12125550002"]["tags"] == ["t1", "t2"]


def test_batch_without_other_phones_column_stores_plain_metadata(database_url: str) -> None:
    store = ContactsStore(database_url)
    store.create_schema()
    insert_rows(store, [_row("+12125550001")], workspace_id="ws1", import_tag="t1")
    insert_rows(store, [_row("+12125550001")], workspace_id="ws1", import_id="b", import_tag="t2", update=True)
    assert [r["metadata"] for r in store.query_contacts("ws1")] == [{"import_tag": "t1"}]


def test_a_batch_of_several_slices_and_workspaces_lands_in_phone_order(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite takes a batch a few rows at a time (here 3): every row still lands, merges or is
    skipped exactly once, and new contacts are created in (workspace, phone) order."""
    monkeypatch.setattr(writers, "SQLITE_SLICE_ROWS", 3)
    store = ContactsStore(database_url)
    store.create_schema()
    insert_rows(store, [_row("+12125550104", "Old"), _row("+12125550101", "Old")], workspace_id="ws2")
    a, b = _share("a"), BatchImport("b:ws2/imports/g.csv", "ws2", "b", {"import_tag": "b"})
    phones = ["+12125550105", "+12125550101", "+12125550103", "+12125550104", "+12125550102", "+12125550106"]
    rows = [_row(phone, f"N{i}") for i, phone in enumerate(phones)]
    frame = batch_frame(rows, range(2, 8)).assign(**{"import": [0, 1, 0, 1, 1, 0]})
    outcomes = store.insert_batch(run_key="r", batch_index=0, imports=[a, b], batch=frame, update=True)
    assert [(o.rows, o.imported, o.updated, o.skipped) for o in outcomes.values()] == [(3, 3, 0, 0), (3, 1, 2, 0)]
    ws1 = store.query_contacts("ws1")
    assert [c["phone_number"] for c in ws1] == ["+12125550103", "+12125550105", "+12125550106"]
    assert {c["phone_number"]: (c["firstname"], c["tags"]) for c in store.query_contacts("ws2")} == {
        "+12125550101": ("Old", ["pre", "b"]),
        "+12125550102": ("N4", ["b"]),
        "+12125550104": ("Old", ["pre", "b"]),
    }
