"""Live progress of an import as run tags, in the reference design's metadata schema.

Tags are namespaced ``contact_import/<field>`` so the Dagster UI shows them on the run page while
the run runs, GraphQL returns them with the run, and runs can be filtered by them.
Fields: status (initializing -> processing -> completed | failed), total, processed, imported,
updated, skipped, failed, current_batch, total_batches, errors (JSON list of the first 10).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg

from contact_import_pipeline.vocabulary import TAG_PREFIX

TEXT_FIELDS = ("status", "error")
COUNT_FIELDS = ("total", "processed", "imported", "updated", "skipped", "failed", "current_batch", "total_batches")
# Run tags are stored as text; keep a failure reason readable but bounded.
MAX_ERROR_CHARS = 2000


def progress_tags(fields: Mapping[str, Any]) -> dict[str, str]:
    """Tag names and text values for the given progress fields."""
    tags: dict[str, str] = {}
    for name, value in fields.items():
        if value is None:
            continue
        if name == "errors":
            tags[TAG_PREFIX + name] = json.dumps(value, ensure_ascii=False)
        elif name == "error":
            tags[TAG_PREFIX + name] = str(value)[:MAX_ERROR_CHARS]
        else:
            tags[TAG_PREFIX + name] = str(value)
    return tags


def read_progress(tags: Mapping[str, str]) -> dict[str, Any]:
    """Progress fields from a run's tags (the inverse of progress_tags); other tags of ours
    (origin, files, workspaces) are not progress."""
    out: dict[str, Any] = {}
    for key, value in tags.items():
        name = key[len(TAG_PREFIX) :] if key.startswith(TAG_PREFIX) else ""
        if name in COUNT_FIELDS:
            out[name] = int(value)
        elif name == "errors":
            out[name] = json.loads(value)
        elif name in TEXT_FIELDS and value:  # an emptied error (a retry starting afresh) is no error
            out[name] = value
    return out


def report(instance: dg.DagsterInstance, run_id: str, **fields: Any) -> None:
    """Write progress fields to the run; later writes replace earlier values."""
    instance.add_run_tags(run_id, progress_tags(fields))


def describe_step_failure(event: dg.DagsterEvent) -> tuple[str, bool]:
    """A failed step's own message, and whether it is the user's (a dg.Failure we raised).

    For other errors the innermost cause is used: Dagster wraps user code's exception in its own.
    """
    data = event.step_failure_data
    if data is None:
        return f"step {event.step_key} failed", False
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description, True
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    return f"step {event.step_key} failed: {error.message.strip() if error else 'unknown error'}", False
