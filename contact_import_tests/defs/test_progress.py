"""defs.progress: a run's progress as run tags, written and read back."""

from __future__ import annotations

from contact_import_pipeline.defs import progress


def test_progress_tags_round_trip() -> None:
    tags = progress.progress_tags(
        {"status": "processing", "total": 10, "imported": 4, "errors": [{"row": 2}], "skipped": None}
    )
    assert tags == {
        "contact_import/status": "processing",
        "contact_import/total": "10",
        "contact_import/imported": "4",
        "contact_import/errors": '[{"row": 2}]',
    }
    assert progress.read_progress(tags | {"dagster/partition": "x"}) == {
        "status": "processing",
        "total": 10,
        "imported": 4,
        "errors": [{"row": 2}],
    }
