"""Unit tests of the plain modules: options, contacts store, rejects file, progress, accounting."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

import pytest

from contact_import_pipeline import progress, stages
from contact_import_pipeline.contacts_store import BATCH_COLUMNS, ContactsStore, normalize_url, redact_url
from contact_import_pipeline.csv_reading import read_csv_bytes
from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.options import ImportOptions, default_import_tag, resolve_options
from contact_import_pipeline.rejects import Reject, escape_cell, rejects_csv
from contact_import_tests.conftest import batch_frame

KEY = "ws1/imports/file.csv"


def test_default_import_tag_format() -> None:
    moment = datetime(2024, 12, 24, 10, 30, 0, tzinfo=timezone.utc)
    assert default_import_tag(moment) == "import:2024-12-24T10:30:00Z"


def test_options_precedence_run_config_over_upload_over_defaults() -> None:
    upload = {"import_tag": "from-sidecar", "default_region": "gb", "board_phone_number": "020 7946 0958"}
    resolved = resolve_options(ImportOptions(import_tag="from-config"), KEY, upload)
    assert (resolved.import_tag, resolved.default_region, resolved.board_phone_number) == (
        "from-config", "GB", "+442079460958",
    )
    started = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert resolve_options(ImportOptions(), KEY, {}, started).import_tag == "import:2025-01-02T03:04:05Z"
    defaults = resolve_options(ImportOptions(), KEY, {})
    assert (defaults.workspace_id, defaults.default_region, defaults.on_duplicate, defaults.cleanup) == (
        "ws1", "US", "skip", "archive",
    )
    assert defaults.import_tag.startswith("import:") and defaults.board_phone_number is None


@pytest.mark.parametrize(
    "config,upload,message",
    [
        (ImportOptions(workspace_id="other"), {}, "does not match the file's workspace 'ws1'"),
        (ImportOptions(board_phone_number="12"), {}, "board_phone_number '12' is not a valid phone number"),
        (ImportOptions(default_region="XX"), {}, "default_region 'XX' is not a known ISO 3166 region"),
        (ImportOptions(on_duplicate="merge"), {}, "on_duplicate must be one of"),
        (ImportOptions(cleanup="shred"), {}, "cleanup must be one of"),
        (ImportOptions(batch_size=0), {}, "batch_size must be between 1 and"),
        (ImportOptions(import_tag="a\nb"), {}, "import_tag contains a control character"),
        (ImportOptions(), {"colour": "red"}, "unknown keys ['colour']"),
        (ImportOptions(), {"column_mapping": {"phone": 3}}, "column_mapping must be an object"),
        (ImportOptions(), {"import_tag": 5}, "option import_tag must be text"),
    ],
)
def test_invalid_options_say_what_is_wrong(config: ImportOptions, upload: dict, message: str) -> None:
    with pytest.raises(OptionsError) as err:
        resolve_options(config, KEY, upload)
    assert message in str(err.value)


def test_partition_key_outside_the_layout_is_refused() -> None:
    with pytest.raises(OptionsError, match="cannot import '../imports/x.csv'"):
        resolve_options(ImportOptions(), "../imports/x.csv", {})


def test_urls_are_normalized_to_psycopg3_and_redacted() -> None:
    assert normalize_url("postgresql://u:secret@h/db") == "postgresql+psycopg://u:secret@h/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert "secret" not in redact_url("postgresql://u:secret@h/db")


def _row(phone: str, first: str = "A") -> tuple[str, ...]:
    values = {c: "" for c in BATCH_COLUMNS} | {"firstname": first, "lastname": "B", "phone_number": phone}
    return tuple(values[c] for c in BATCH_COLUMNS)


def test_store_batch_is_idempotent_and_records_outcome(database_url: str) -> None:
    store = ContactsStore(database_url)
    store.create_schema()
    store.create_schema()  # creating twice is harmless
    seen: list[stages.ImportProgress] = []
    args = dict(import_id="run1:ws1/imports/f.csv", workspace_id="ws1", import_tag="t", board_phone_number="+12024561414")
    first = store.insert_batch(batch_index=0, batch=batch_frame([_row("+12125550001"), _row("+12125550002")], [2, 3]), on_progress=seen.append, **args)
    again = store.insert_batch(batch_index=0, batch=batch_frame([_row("+12125550001"), _row("+12125550002")], [2, 3]), **args)
    other = store.insert_batch(batch_index=1, batch=batch_frame([_row("+12125550002"), _row("+12125550003")], [4, 5]), on_progress=seen.append, **args)
    assert (first.imported, first.skipped, first.conflict_rows) == (2, 0, [])
    assert again == first
    assert (other.imported, other.skipped, other.conflict_rows) == (1, 1, [4])
    assert [(p.batches, p.imported, p.skipped) for p in seen] == [(1, 2, 0), (2, 3, 1)]
    assert sorted(store.recorded_batches(args["import_id"])) == [0, 1]
    assert store.count_contacts("ws1") == 3
    assert store.existing_phones("ws1", ["+12125550001", "+19999999999"]) == {"+12125550001"}
    assert store.existing_phones("ws2", ["+12125550001"]) == set()
    rows = store.query_contacts("ws1", "t")
    assert [r["metadata"] for r in rows] == [{"import_tag": "t", "board_phone_number": "+12024561414"}] * 3


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
    outcome = store.insert_batch(
        import_id="awkward", batch_index=0, workspace_id="ws1", import_tag="t", board_phone_number=None,
        batch=batch_frame(rows, list(range(2, 2 + len(rows)))),
    )
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


def _deduped(text: bytes, batch_size: int = 2) -> stages.DedupedImport:
    options = resolve_options(ImportOptions(batch_size=batch_size, import_tag="t"), KEY, {})
    raw = stages.RawImport(options=options, table=read_csv_bytes(text, "file.csv"))
    return stages.DedupedImport(**{
        k: v for k, v in vars(stages.normalize(raw)).items() if k not in ("raw", "raw_rows")
    })


def test_summarize_refuses_missing_batches_and_bad_sums() -> None:
    deduped = _deduped(b"name,phone\nA,2125550001\nB,2125550002\nC,2125550003\nD,\n")
    batches = stages.plan_batches(deduped, "imp")
    assert [(b.index, b.count, len(b.frame), b.frame["row"].tolist(), b.failed_before) for b in batches] == [
        (0, 2, 2, [2, 3], 1), (1, 2, 1, [4], 1),
    ]
    one = stages.BatchOutcome(rows=2, imported=2, skipped=0, updated=0, conflict_rows=[])
    with pytest.raises(stages.AccountingError, match=r"1 of 2 planned batches have no recorded outcome \(batch 1\)"):
        stages.summarize(deduped, 2, {0: one}, 0.0)
    wrong = stages.BatchOutcome(rows=1, imported=5, skipped=0, updated=0, conflict_rows=[])
    with pytest.raises(stages.AccountingError, match="counts do not add up"):
        stages.summarize(deduped, 2, {0: one, 1: wrong}, 0.0)
    late = stages.BatchOutcome(rows=1, imported=0, skipped=1, updated=0, conflict_rows=[4])
    summary = stages.summarize(deduped, 2, {0: one, 1: late}, 0.0)
    assert (summary.imported, summary.skipped, summary.failed, summary.batches) == (2, 1, 1, 2)
    assert [(r.row, r.reason, r.values) for r in summary.rejects] == [
        (4, "duplicate_existing", ["C", "2125550003"]), (5, "missing_phone", ["D", ""]),
    ]
