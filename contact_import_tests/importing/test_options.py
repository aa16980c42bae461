"""Unit tests of the plain modules: options, contacts store, rejects file, progress, accounting."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pandas as pd
import pytest

from contact_import_pipeline.defs import progress
from contact_import_pipeline.importing import stages
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import normalize_url, redact_url
from contact_import_pipeline.model import BATCH_COLUMNS, BatchImport, BatchOutcome, ImportProgress
from contact_import_pipeline.reading.csv_file import read_csv_bytes
from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.vocabulary import default_import_tag
from contact_import_pipeline.storage.ledger import ImportClaim, Ledger
from contact_import_pipeline.defs.config import FileImport
from contact_import_pipeline.importing.options import check_batch_size, resolve_options
from contact_import_pipeline.importing.rejects import escape_cell, rejects_csv
from contact_import_pipeline.model import Reject
from contact_import_tests.conftest import batch_frame, insert_rows

KEY = "ws1/imports/file.csv"
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_default_import_tag_format() -> None:
    moment = datetime(2024, 12, 24, 10, 30, 0, tzinfo=timezone.utc)
    assert default_import_tag(moment) == "import:2024-12-24T10:30:00Z"


def test_options_precedence_run_config_over_upload_over_defaults() -> None:
    upload = {"import_tag": "from-sidecar", "default_region": "gb", "board_phone_number": "020 7946 0958"}
    resolved = resolve_options(FileImport(key=KEY, import_tag="from-config"), upload, STARTED)
    assert (resolved.import_tag, resolved.default_region, resolved.board_phone_number) == (
        "from-config", "GB", "+442079460958",
    )
    defaults = resolve_options(FileImport(key=KEY), {}, STARTED)
    assert (defaults.workspace_id, defaults.default_region, defaults.on_duplicate, defaults.cleanup) == (
        "ws1", "US", "skip", "archive",
    )
    # The default tag is settled by the ledger, dated by the upload time when known, else the run's start.
    assert (defaults.import_tag, defaults.tag_time, defaults.board_phone_number) == ("", STARTED, None)
    uploaded = resolve_options(FileImport(key=KEY, uploaded_at=1735787045.9), {}, STARTED)
    assert default_import_tag(uploaded.tag_time) == "import:2025-01-02T03:04:05Z"


def test_url_source_without_key_gets_one_in_its_workspace() -> None:
    resolved = resolve_options(FileImport(source="https://files.example.com/x/Spring%20Fair.CSV?sig=1", workspace_id="ws1"), {}, STARTED)
    assert resolved.key == "ws1/imports/Spring_20Fair.CSV"
    with pytest.raises(OptionsError, match="each file needs a key"):
        resolve_options(FileImport(), {}, STARTED)


@pytest.mark.parametrize(
    "config,upload,message",
    [
        (FileImport(key=KEY, workspace_id="other"), {}, "does not match the file's workspace 'ws1'"),
        (FileImport(key=KEY, board_phone_number="12"), {}, "board_phone_number '12' is not a valid phone number"),
        (FileImport(key=KEY, default_region="XX"), {}, "default_region 'XX' is not a known ISO 3166 region"),
        (FileImport(key=KEY, on_duplicate="merge"), {}, "on_duplicate must be one of"),
        (FileImport(key=KEY, cleanup="shred"), {}, "cleanup must be one of"),
        (FileImport(key=KEY, import_tag="a\nb"), {}, "import_tag contains a control character"),
        (FileImport(key=KEY), {"colour": "red"}, "unknown keys ['colour']"),
        (FileImport(key=KEY), {"column_mapping": {"phone": 3}}, "column_mapping must be an object"),
        (FileImport(key=KEY), {"import_tag": 5}, "option import_tag must be text"),
    ],
)
def test_invalid_options_say_what_is_wrong(config: FileImport, upload: dict, message: str) -> None:
    with pytest.raises(OptionsError) as err:
        resolve_options(config, upload, STARTED)
    assert message in str(err.value)


def test_batch_size_outside_its_range_is_refused() -> None:
    assert check_batch_size(200_000) == 200_000
    with pytest.raises(OptionsError, match="batch_size must be between 1 and 200000, got 0"):
        check_batch_size(0)


def test_key_outside_the_layout_is_refused() -> None:
    with pytest.raises(OptionsError, match="cannot import '../imports/x.csv'"):
        resolve_options(FileImport(key="../imports/x.csv"), {}, STARTED)


def test_urls_are_normalized_to_psycopg3_and_redacted() -> None:
    assert normalize_url("postgresql://u:secret@h/db") == "postgresql+psycopg://u:secret@h/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert "secret" not in redact_url("postgresql://u:secret@h/db")


def _row(phone: str, first: str = "A") -> tuple[str, ...]:
    values = {c: "" for c in BATCH_COLUMNS} | {"firstname": first, "lastname": "B", "phone_number": phone}
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

    first = store.insert_batch(run_key="run1", batch_index=0, imports=[a, b], on_progress=seen.append,
                               batch=batch([_row("+12125550001"), _row("+12125550002"), _row("+12125550001")], [2, 3, 2], [0, 0, 1]))
    again = store.insert_batch(run_key="run1", batch_index=0, imports=[a, b],
                               batch=batch([_row("+12125550001"), _row("+12125550002"), _row("+12125550001")], [2, 3, 2], [0, 0, 1]))
    other = store.insert_batch(run_key="run1", batch_index=1, imports=[a], on_progress=seen.append,
                               batch=batch([_row("+12125550002"), _row("+12125550003")], [4, 5], [0, 0]))
    assert {k: (o.imported, o.skipped, o.conflict_rows) for k, o in first.items()} == {a.import_id: (2, 0, []), b.import_id: (1, 0, [])}
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
    return ImportClaim(share.import_id, position, share.import_id.split(":", 1)[1], "", share.workspace_id, "f.csv",
                       share.import_tag, STARTED, "cli")


def test_store_keeps_awkward_values_exactly(database_url: str) -> None:
    """Quotes, separators, newlines, backslashes, '' and a line reading \\. (COPY's end-of-data
    marker) survive the CSV stream into PostgreSQL unchanged."""
    awkward = ['say "hi", then leave', "two\nlines\r\nand \\N", "tab\there; pipe|", "", "Zoë 李 Ωμέγα 🙂", "\\", "NULL",
               "first line\n\\.\nafter the marker", "\\.", "a,\"b\",c"]
    store = ContactsStore(database_url)
    store.create_schema()
    rows = [
        tuple({"firstname": value, "lastname": "", "st_address": value, "phone_number": f"+1212555{i:04d}"}.get(c, "") for c in BATCH_COLUMNS)
        for i, value in enumerate(awkward)
    ]
    outcome = insert_rows(store, rows, workspace_id="ws1", import_id="awkward", import_tag="t")
    assert (outcome.imported, outcome.skipped, outcome.conflict_rows) == (len(awkward), 0, [])
    stored = {r["phone_number"]: r for r in store.query_contacts("ws1")}
    assert [stored[f"+1212555{i:04d}"]["firstname"] for i in range(len(awkward))] == awkward
    assert [stored[f"+1212555{i:04d}"]["st_address"] for i in range(len(awkward))] == awkward
    assert {stored[p]["lastname"] for p in stored} == {""} and {stored[p]["email"] for p in stored} == {""}


def test_rejects_file_escapes_formulas_and_keeps_extra_fields() -> None:
    assert [escape_cell(v) for v in ("=1+1", "+1 202", "-3", "@SUM", "\tx", "\rx", "plain", "")] == [
        "'=1+1", "'+1 202", "'-3", "'@SUM", "'\tx", "'\rx", "plain", "",
    ]
    rejects = [
        Reject(row=3, reason="invalid_phone", detail="not a valid phone number: '=2+5'", values=["=cmd", "=2+5"]),
        Reject(row=4, reason="wrong_field_count", detail="expected 2 fields, found 3", values=["a", "b", "c"]),
    ]
    text = rejects_csv(["Name", "Phone"], rejects).decode("utf-8")
    assert text.startswith("\ufeff")
    parsed = list(csv.reader(io.StringIO(text[1:])))
    assert parsed == [
        ["Name", "Phone", "extra_3", "row", "reason", "detail"],
        ["'=cmd", "'=2+5", "", "3", "invalid_phone", "not a valid phone number: '=2+5'"],
        ["a", "b", "c", "4", "wrong_field_count", "expected 2 fields, found 3"],
    ]


def test_progress_tags_round_trip() -> None:
    tags = progress.progress_tags({"status": "processing", "total": 10, "imported": 4, "errors": [{"row": 2}], "skipped": None})
    assert tags == {
        "contact_import/status": "processing",
        "contact_import/total": "10",
        "contact_import/imported": "4",
        "contact_import/errors": '[{"row": 2}]',
    }
    assert progress.read_progress(tags | {"dagster/partition": "x"}) == {
        "status": "processing", "total": 10, "imported": 4, "errors": [{"row": 2}],
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
        (0, 2, 2, [2, 3], 1), (1, 2, 1, [4], 1),
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
        (4, "duplicate_existing", ["C", "2125550003"]), (5, "missing_phone", ["D", ""]),
    ]
