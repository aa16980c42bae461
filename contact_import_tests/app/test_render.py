"""What `contact-import` prints, from plain values: every line and JSON shape, exactly."""

from __future__ import annotations

from typing import Any

import pytest

from contact_import_pipeline.app import render
from contact_import_pipeline.app.graphql import RunState

RUN_ID = "0f0e0d0c-0000-4000-8000-000000000002"
SUMMARY: dict[str, Any] = {
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
        "status": "completed",
        "workspace_id": "acme",
        "import_tag": "fair",
        "total": 10,
        "imported": 7,
        "updated": 0,
        "skipped": 1,
        "failed": 2,
        "batches": 1,
        "errors": SUMMARY["errors"],
        "rejects_file": "rejects/people.csv",
        "run_id": RUN_ID,
        "skipped_by_reason": {"duplicate_in_file": 1},
        "failed_by_reason": {"invalid_phone": 1, "missing_phone": 1},
        "timings": {"read": 0.1},
    }
    assert render.json_text(render.failure_json("café.csv: no phone column", None)) == (
        '{"status": "failed", "error": "café.csv: no phone column", "run_id": null}'
    )


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
