"""What `contact-import` prints, from plain values: every line and JSON shape, exactly."""

from __future__ import annotations

from typing import Any

import pytest

from contact_import_pipeline.app import render
from contact_import_pipeline.app.graphql import RunState

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000002"
MAPPING: dict[str, Any] = {
    "fields": {"First Name": "firstname", "Mobile": "phone"},
    "phone_column": {"header": "Mobile", "why": "its header is a phone header", "fallbacks": []},
    "unmapped": ["Notes"],
}
DIAGNOSIS = {
    "code": "default_region",
    "message": "8 of 9 invalid phones are valid GB numbers: set default_region=GB (--region GB) and import the file again",
    "numbers": {"invalid_phones": 9, "valid_in_region": 8, "region": "GB", "default_region": "US"},
}
SUMMARY: dict[str, Any] = {
    "dry_run": False,
    "status": "completed",
    "workspace_id": "acme",
    "import_tag": "fair",
    "file": "acme/imports/people.csv",
    "total": 10,
    "processed": 10,
    "imported": 7,
    "updated": 0,
    "skipped": 1,
    "failed": 2,
    "batches": 1,
    "skipped_by_reason": {"duplicate_in_file": 1},
    "failed_by_reason": {"invalid_phone": 1, "missing_phone": 1},
    "errors": [
        {"row": 9, "reason": "missing_phone", "detail": "no phone"},
        {"row": 10, "reason": "invalid_phone", "detail": "'12345' is not a phone number"},
    ],
    "rejects_file": "rejects/people.csv",
    "cleanup": None,
    "encoding": "utf-8",
    "delimiter": ",",
    "timings": {"read": 0.1},
    "mapping": MAPPING,
    "diagnoses": [],
    "multi_phone_rows": 0,
    "run_id": RUN_ID,
    "import_id": f"{RUN_ID}:acme/imports/people.csv",
}


@pytest.mark.parametrize(
    ("done", "total", "drawn"),
    [(0, 0, "-" * 30), (0, 10, "-" * 30), (1, 3, "#" * 10 + "-" * 20), (3, 3, "#" * 30), (5, 3, "#" * 30)],
)
def test_bar_is_the_share_done_and_never_overflows(done: int, total: int, drawn: str) -> None:
    assert render.bar(done, total) == f"[{drawn}]"


def test_summary_text_lists_counts_reasons_errors_and_rejects() -> None:
    assert render.summary_text(SUMMARY).splitlines() == [
        "Imported acme/imports/people.csv into workspace acme with tag fair",
        "  total 10 | imported 7 | updated 0 | skipped 1 (duplicate_in_file 1) | "
        "failed 2 (invalid_phone 1, missing_phone 1) | batches 1",
        "  row 9: missing_phone: no phone",
        "  row 10: invalid_phone: '12345' is not a phone number",
        "  rejects file: rejects/people.csv",
        f"  run id: {RUN_ID}",
    ]
    clean = SUMMARY | {
        "skipped": 0,
        "failed": 0,
        "skipped_by_reason": {},
        "failed_by_reason": {},
        "errors": [],
        "rejects_file": None,
    }
    assert render.summary_text(clean).splitlines()[1:] == [
        "  total 10 | imported 7 | updated 0 | skipped 0 | failed 0 | batches 1",
        f"  run id: {RUN_ID}",
    ]


def test_summary_json_leaves_out_the_internals() -> None:
    assert render.summary_json(SUMMARY) == {
        "dry_run": False,
        "status": "completed",
        "workspace_id": "acme",
        "import_tag": "fair",
        "file": "acme/imports/people.csv",
        "total": 10,
        "imported": 7,
        "updated": 0,
        "skipped": 1,
        "failed": 2,
        "batches": 1,
        "errors": SUMMARY["errors"],
        "rejects_file": "rejects/people.csv",
        "encoding": "utf-8",
        "delimiter": ",",
        "mapping": MAPPING,
        "diagnoses": [],
        "multi_phone_rows": 0,
        "run_id": RUN_ID,
        "skipped_by_reason": {"duplicate_in_file": 1},
        "failed_by_reason": {"invalid_phone": 1, "missing_phone": 1},
        "timings": {"read": 0.1},
    }
    assert render.json_text(render.failure_json("café.csv: no phone column", None)) == (
        '{"status": "failed", "error": "café.csv: no phone column", "run_id": null}'
    )


def test_diagnoses_and_cells_of_several_phones_follow_the_summary() -> None:
    lines = render.summary_text(SUMMARY | {"diagnoses": [DIAGNOSIS], "multi_phone_rows": 2}).splitlines()
    assert lines[-3:] == [
        "  2 rows listed several phones: the first valid one is the phone, the others are kept in "
        "metadata.other_phones",
        f"  ! {DIAGNOSIS['message']} [default_region]",
        f"  run id: {RUN_ID}",
    ]


def test_dry_run_text_shows_reading_mapping_samples_predictions_and_diagnoses() -> None:
    dry = SUMMARY | {
        "dry_run": True,
        "rejects_file": None,
        "diagnoses": [DIAGNOSIS],
        "sample_contacts": [
            {"row": 2, "firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com",
             "city": "London", "phone_number": "+14155552671"},
            {"row": 3, "phone_number": "+14155552672"},
        ],
    }  # fmt: skip
    assert render.summary_text(dry).splitlines() == [
        "Dry run of acme/imports/people.csv for workspace acme: nothing was written",
        "  read as utf-8, delimiter ','",
        "  columns: 'First Name' -> firstname, 'Mobile' -> phone",
        "  unmapped: 'Notes'",
        "  phone column: 'Mobile' (its header is a phone header)",
        "  would import 7 | update 0 | skip 1 (duplicate_in_file 1) | fail 2 (invalid_phone 1, missing_phone 1) "
        "of 10 rows, in 1 batches",
        "  row 9: missing_phone: no phone",
        "  row 10: invalid_phone: '12345' is not a phone number",
        "  sample contacts:",
        "    row 2: +14155552671 Ada Lovelace <ada@example.com> city=London",
        "    row 3: +14155552672",
        f"  ! {DIAGNOSIS['message']} [default_region]",
        f"  run id: {RUN_ID}",
    ]
    assert render.summary_json(dry)["sample_contacts"] == dry["sample_contacts"]
    quiet = dry | {"sample_contacts": [], "diagnoses": []}
    assert render.summary_text(quiet).splitlines()[-3:] == [
        "  no contact would be imported",
        "  no diagnosis: the file looks as intended",
        f"  run id: {RUN_ID}",
    ]


@pytest.mark.parametrize(
    ("stage", "progress", "line"),
    [
        ("reading", {}, "[------------------------------] reading"),
        (
            "deduplicating",
            {"status": "initializing", "total": 0, "processed": 0},
            "[------------------------------] deduplicating",
        ),
        (
            "inserting",
            {"status": "processing", "total": 5000, "processed": 2500, "current_batch": 5, "total_batches": 10},
            "[###############---------------] 2500/5000 rows processed | batch 5/10 | inserting",
        ),
        (
            "summarizing",
            {"status": "completed", "total": 3, "processed": 3, "current_batch": 1, "total_batches": 1},
            "[##############################] 3/3 rows processed | batch 1/1 | summarizing",
        ),
    ],
)
def test_import_progress_line_shows_the_stage_rows_and_batch(stage: str, progress: dict[str, Any], line: str) -> None:
    assert render.import_progress_line(stage, progress) == line


def test_status_lines_and_json() -> None:
    queued = RunState(RUN_ID, "QUEUED", {}, {})
    running = RunState(
        RUN_ID,
        "STARTED",
        {},
        {
            "status": "processing",
            "total": 5000,
            "processed": 2500,
            "imported": 2400,
            "skipped": 60,
            "failed": 40,
            "current_batch": 5,
            "total_batches": 10,
        },
    )
    done = RunState(
        RUN_ID, "SUCCESS", {}, running.progress | {"status": "completed", "processed": 5000, "imported": 4900}
    )
    assert render.progress_line(queued) == "[------------------------------] queued (QUEUED)"
    assert render.progress_line(running) == (
        "[###############---------------] 2500/5000 processed | imported 2400 | skipped 60 | failed 40 | batch 5/10 | processing"
    )
    assert render.final_line(done, None) == (
        f"run {RUN_ID} completed: 5000 rows | imported 4900 | updated 0 | skipped 60 | failed 40 | batches 10"
    )
    assert render.final_line(done, "the run was canceled") == f"run {RUN_ID} failed: the run was canceled"
    assert render.status_json(running, "http://dagster/runs/x", None) == {
        "run_id": RUN_ID,
        "run_status": "STARTED",
        "run_url": "http://dagster/runs/x",
        "progress": running.progress,
        "error": None,
    }
