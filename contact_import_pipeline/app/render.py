"""What the ``contact-import`` command prints: plain functions from values to text or JSON shapes.

Kept apart from the command's parsing and handlers so that each line and JSON shape can be tested
without running a command, a run or a webserver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from contact_import_pipeline.app.graphql import RunState
from contact_import_pipeline.storage.ledger import LedgerEntry
from contact_import_pipeline.vocabulary import DRY_RUN_TAG

BAR_WIDTH = 30  # characters between the brackets of a progress bar
SUMMARY_KEYS = (
    "dry_run",
    "status",
    "workspace_id",
    "import_tag",
    "file",
    "total",
    "imported",
    "updated",
    "skipped",
    "failed",
    "batches",
    "errors",
    "rejects_file",
    "encoding",
    "delimiter",
    "mapping",
    "diagnoses",
    "multi_phone_rows",
    "run_id",
)
DIAGNOSIS_MARK = "  ! "  # starts each diagnosis line of the summary, status and history


def json_text(value: Any) -> str:
    """One line of JSON; non-ASCII stays readable, dates and other values become text."""
    return json.dumps(value, ensure_ascii=False, default=str)


def bar(done: int, total: int) -> str:
    """``[#####-----]``: the share of ``done`` in ``total`` (empty while the total is unknown)."""
    filled = BAR_WIDTH * min(done, total) // total if total > 0 else 0
    return f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"


def _reasons(counts: Mapping[str, int]) -> str:
    return f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""


def diagnosis_lines(diagnoses: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per diagnosis: its message, which names the fix."""
    return [f"{DIAGNOSIS_MARK}{d['message']} [{d['code']}]" for d in diagnoses]


def summary_text(summary: Mapping[str, Any]) -> str:
    """An import's summary (``runner.summary_of``) as the lines ``import`` and ``demo`` print."""
    if summary.get("dry_run"):
        return dry_run_text(summary)
    lines = [
        f"Imported {summary['file']} into workspace {summary['workspace_id']} with tag {summary['import_tag']}",
        f"  total {summary['total']} | imported {summary['imported']} | updated {summary['updated']} | "
        f"skipped {summary['skipped']}{_reasons(summary['skipped_by_reason'])} | "
        f"failed {summary['failed']}{_reasons(summary['failed_by_reason'])} | batches {summary['batches']}",
    ]
    lines += [f"  row {e['row']}: {e['reason']}: {e['detail']}" for e in summary["errors"]]
    if summary.get("rejects_file"):
        lines.append(f"  rejects file: {summary['rejects_file']}")
    lines += multi_phone_lines(summary)
    lines += diagnosis_lines(summary.get("diagnoses") or [])
    lines.append(f"  run id: {summary['run_id']}")
    return "\n".join(lines)


def multi_phone_lines(summary: Mapping[str, Any]) -> list[str]:
    """What became of cells listing several phones, when there were any."""
    count = summary.get("multi_phone_rows") or 0
    if not count:
        return []
    rows = "1 row" if count == 1 else f"{count} rows"
    return [f"  {rows} listed several phones: the first valid one is the phone, the others are kept in "
            "metadata.other_phones"]  # fmt: skip


def dry_run_text(summary: Mapping[str, Any]) -> str:
    """``import --dry-run``: how the file was read and mapped, sample contacts, the predicted counts and diagnoses."""
    mapping = summary["mapping"]
    phone = mapping["phone_column"]
    lines = [
        f"Dry run of {summary['file']} for workspace {summary['workspace_id']}: nothing was written",
        f"  read as {summary['encoding']}, delimiter {summary['delimiter']!r}",
        "  columns: " + ", ".join(f"{header!r} -> {field}" for header, field in mapping["fields"].items()),
        "  unmapped: " + (", ".join(repr(h) for h in mapping["unmapped"]) or "none"),
        f"  phone column: {phone['header']!r} ({phone['why']})",
        f"  would import {summary['imported']} | update {summary['updated']} | skip {summary['skipped']}"
        f"{_reasons(summary['skipped_by_reason'])} | fail {summary['failed']}{_reasons(summary['failed_by_reason'])} "
        f"of {summary['total']} rows, in {summary['batches']} batches",
    ]
    lines += [f"  row {e['row']}: {e['reason']}: {e['detail']}" for e in summary["errors"]]
    lines += multi_phone_lines(summary)
    lines.append("  sample contacts:" if summary["sample_contacts"] else "  no contact would be imported")
    lines += [f"    row {c['row']}: {sample_contact_text(c)}" for c in summary["sample_contacts"]]
    lines += diagnosis_lines(summary["diagnoses"]) or ["  no diagnosis: the file looks as intended"]
    lines.append(f"  run id: {summary['run_id']}")
    return "\n".join(lines)


def sample_contact_text(contact: Mapping[str, Any]) -> str:
    """``+14155552671 Ada Lovelace <ada@example.com> city=Boston``: a contact a dry run would insert."""
    named = {"row", "phone_number", "firstname", "lastname", "email"}
    rest = " ".join(f"{k}={v}" for k, v in contact.items() if k not in named)
    name = f"{contact.get('firstname', '')} {contact.get('lastname', '')}".strip()
    email = f" <{contact['email']}>" if contact.get("email") else ""
    return " ".join(part for part in (contact["phone_number"], name + email, rest) if part)


def summary_json(summary: Mapping[str, Any]) -> dict[str, Any]:
    """``import --json``: the summary's fields a caller needs, not its internals (import id...); a dry
    run's also has its sample contacts."""
    extra = {"sample_contacts": summary["sample_contacts"]} if summary.get("dry_run") else {}
    return (
        {key: summary.get(key) for key in SUMMARY_KEYS}
        | {
            "skipped_by_reason": summary["skipped_by_reason"],
            "failed_by_reason": summary["failed_by_reason"],
            "timings": summary["timings"],
        }
        | extra
    )


def failure_json(message: str, run_id: str | None) -> dict[str, Any]:
    """Any command's ``--json`` answer when it fails: the same shape as a failed import's summary."""
    return {"status": "failed", "error": message, "run_id": run_id}


def import_progress_line(stage: str, progress: Mapping[str, Any]) -> str:
    """``import``'s live line: ``[#####-----] 2500/5000 rows processed | batch 5/10 | inserting``.

    ``progress`` holds the run's progress fields (``defs.progress.read_progress``); until
    deduplication has counted the rows there is only the stage.
    """
    total = progress.get("total", 0)
    if not total:
        return f"{bar(0, 0)} {stage}"
    processed = progress.get("processed", 0)
    return (
        f"{bar(processed, total)} {processed}/{total} rows processed | "
        f"batch {progress.get('current_batch', 0)}/{progress.get('total_batches', 0)} | {stage}"
    )


def progress_line(state: RunState) -> str:
    """``status``'s line for a run that has not finished:
    ``[#####-----] 2500/5000 processed | imported 2400 | skipped 60 | failed 40 | batch 5/10 | processing``."""
    p = state.progress
    total, processed = p.get("total"), p.get("processed", 0)
    if not total:
        return f"{bar(0, 0)} {p.get('status') or state.status.lower()} ({state.status})"
    return (
        f"{bar(processed, total)} {processed}/{total} processed | "
        f"imported {p.get('imported', 0)} | skipped {p.get('skipped', 0)} | failed {p.get('failed', 0)} | "
        f"batch {p.get('current_batch', 0)}/{p.get('total_batches', 0)} | {p.get('status', state.status.lower())}"
    )


def final_line(state: RunState, reason: str | None) -> str:
    """``status``'s line for a finished run: its totals, or why it failed."""
    if reason:
        return f"run {state.run_id} failed: {reason}"
    p = state.progress
    what = "dry run (nothing written), predicted" if state.tags.get(DRY_RUN_TAG) == "true" else "completed"
    return (
        f"run {state.run_id} {what}: {p.get('total', 0)} rows | imported {p.get('imported', 0)} | "
        f"updated {p.get('updated', 0)} | skipped {p.get('skipped', 0)} | failed {p.get('failed', 0)} | "
        f"batches {p.get('total_batches', 0)}"
    )


def status_json(state: RunState, run_url: str, reason: str | None) -> dict[str, Any]:
    """``status --json``: the run's state (``--follow`` prints one per change)."""
    return {
        "run_id": state.run_id,
        "run_status": state.status,
        "run_url": run_url,
        "progress": state.progress,
        "error": reason,
    }


def import_status_line(e: LedgerEntry) -> str:
    """``status``'s line for one import of the run, from its ledger entry."""
    line = (
        f"  {e.file} ({e.workspace_id}, {e.import_tag}): {e.status} {e.processed}/{e.total} | imported {e.imported} | "
        f"updated {e.updated} | skipped {e.skipped} | failed {e.failed}"
    )
    line += f" | {e.error}" if e.error else ""
    return "\n".join([line, *diagnosis_lines(e.details.get("diagnoses", []))])


def history_text(e: LedgerEntry) -> str:
    """``imports``: one import of the workspace's history, on two lines (three with its error)."""
    undone = f" | undone {e.undone_at} ({e.undone_count} deleted)" if e.undone_at else ""
    error = f"\n  error: {e.error}" if e.error else ""
    return (
        f"{e.started_at or '-'}  {e.status:<11} {e.import_tag}  {e.file}\n"
        f"  total {e.total} | imported {e.imported} | updated {e.updated} | skipped {e.skipped} | "
        f"failed {e.failed} | ended {e.ended_at or '-'} | {e.origin} | run {e.run_id}{undone}{error}"
    ) + "".join("\n" + line for line in diagnosis_lines(e.details.get("diagnoses", [])))


def contact_line(row: Mapping[str, Any]) -> str:
    """``contacts``: one contact (``ContactsStore.query_contacts`` row)."""
    return f"{row['phone_number']:<16} {row['firstname']} {row['lastname']} <{row['email'] or ''}> {row['tags']}"
