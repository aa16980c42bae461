"""The ``contact-import`` command.

Exit codes: 0 success (a completed import, even with failed or skipped rows), 1 an unexpected
failure (database down, crash), 2 bad input (file-level error, invalid options or arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from contact_import_pipeline.storage.bucket import BucketError
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import default_database_url
from contact_import_pipeline.app.graphql import DagsterApi, DagsterApiError, DagsterConfigInvalid, DagsterUnreachable, RunNotFound, RunState, dagster_url_from_env
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.keys import validate_workspace_id
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.app.runner import LOCAL_HOME, ImportFailed, ImportRequest, run_import
from contact_import_pipeline.settings import STATUS_POLL_SECONDS, STATUS_RECONNECT_SECONDS

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
BAR_WIDTH = 30  # characters of the `status --follow` progress bar
DEMO_WORKSPACE = "demo"
SUMMARY_KEYS = (
    "status", "workspace_id", "import_tag", "total", "imported", "updated", "skipped", "failed",
    "batches", "errors", "rejects_file", "run_id",
)


def _add_import_options(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """Options shared by every command that starts an import."""
    what = "CSV file: a local path, an http(s) URL, or a bucket key <workspace>/imports/<name>.csv"
    if several:
        parser.add_argument("sources", nargs="+", metavar="source", help=what + " (several: one run imports them all, in this order)")
    else:
        parser.add_argument("source", help=what)
    parser.add_argument("--workspace", required=True, help="workspace id the contacts belong to")
    parser.add_argument("--tag", default="", help="import tag (default: import:<UTC time>Z)")
    parser.add_argument("--board-phone", default="", help="board phone number, stored in metadata.board_phone_number")
    parser.add_argument("--region", default="", help="default region for national numbers (default: US)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contact-import", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    imp = commands.add_parser("import", help="import a CSV file in this process (no daemon needed)")
    _add_import_options(imp)
    imp.add_argument("--batch-size", type=int, default=None, help="contacts per insert batch")
    imp.add_argument("--on-duplicate", choices=("skip", "update"), default="", help="existing phone: skip (default) or update empty fields")
    imp.add_argument("--database-url", default=None, help="contacts database URL (default: $CONTACTS_DATABASE_URL or local SQLite)")
    imp.add_argument("--json", action="store_true", help="print one JSON object")
    imp.set_defaults(handler=_cmd_import)

    con = commands.add_parser("contacts", help="list a workspace's contacts")
    con.add_argument("--workspace", required=True)
    con.add_argument("--tag", default=None, help="only contacts carrying this import tag")
    con.add_argument("--database-url", default=None)
    con.add_argument("--json", action="store_true", help="print a JSON list")
    con.set_defaults(handler=_cmd_contacts)

    demo = commands.add_parser("demo", help="import the bundled sample into the local default and explain what to do next")
    demo.set_defaults(handler=_cmd_demo)

    trigger = commands.add_parser("trigger", help="launch one run importing one or more files on the Dagster daemon over GraphQL")
    _add_import_options(trigger, several=True)
    trigger.add_argument("--batch-size", type=int, default=None, help="contacts per insert batch")
    _add_dagster_options(trigger, "print one JSON object {run_id, run_url, files}")
    trigger.set_defaults(handler=_cmd_trigger)

    status = commands.add_parser("status", help="show a run's progress (over GraphQL) and each of its imports (from the ledger)")
    status.add_argument("run_id")
    status.add_argument("--follow", action="store_true", help="draw a progress bar until the run ends")
    status.add_argument("--database-url", default=None, help="contacts database holding the ledger (default: $CONTACTS_DATABASE_URL or local SQLite)")
    _add_dagster_options(status, "print JSON (with --follow: one object per change, the last one final)")
    status.set_defaults(handler=_cmd_status)

    hist = commands.add_parser("imports", help="list a workspace's imports, newest first (from the ledger)")
    hist.add_argument("--workspace", required=True)
    hist.add_argument("--database-url", default=None)
    hist.add_argument("--json", action="store_true", help="print a JSON list")
    hist.set_defaults(handler=_cmd_imports)

    undo = commands.add_parser("undo", help="delete the contacts an import created (never those it skipped or updated)")
    undo.add_argument("tag", help="the import tag")
    undo.add_argument("--workspace", required=True)
    undo.add_argument("--dry-run", action="store_true", help="only print how many contacts would be deleted")
    undo.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    undo.add_argument("--database-url", default=None)
    undo.add_argument("--json", action="store_true", help="print one JSON object")
    undo.set_defaults(handler=_cmd_undo)
    return parser


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str))


def _summary_text(summary: dict[str, Any]) -> str:
    def reasons(counts: dict[str, int]) -> str:
        return f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""

    lines = [
        f"Imported {summary['file']} into workspace {summary['workspace_id']} with tag {summary['import_tag']}",
        f"  total {summary['total']} | imported {summary['imported']} | updated {summary['updated']} | "
        f"skipped {summary['skipped']}{reasons(summary['skipped_by_reason'])} | "
        f"failed {summary['failed']}{reasons(summary['failed_by_reason'])} | batches {summary['batches']}",
    ]
    lines += [f"  row {e['row']}: {e['reason']}: {e['detail']}" for e in summary["errors"]]
    if summary.get("rejects_file"):
        lines.append(f"  rejects file: {summary['rejects_file']}")
    lines.append(f"  run id: {summary['run_id']}")
    return "\n".join(lines)


def _cmd_import(args: argparse.Namespace) -> int:
    request = ImportRequest(
        source=args.source,
        workspace_id=args.workspace,
        import_tag=args.tag,
        board_phone_number=args.board_phone,
        default_region=args.region,
        batch_size=args.batch_size,
        on_duplicate=args.on_duplicate,
    )
    try:
        validate_workspace_id(args.workspace)
        summary = run_import(request, database_url=args.database_url)
    except OptionsError as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT)
    except ImportFailed as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT if exc.user_error else EXIT_FAILED, exc.run_id)
    if args.json:
        _print_json({key: summary.get(key) for key in SUMMARY_KEYS} | {
            "skipped_by_reason": summary["skipped_by_reason"],
            "failed_by_reason": summary["failed_by_reason"],
            "timings": summary["timings"],
        })
    else:
        print(_summary_text(summary))
    return EXIT_OK


def _fail(args: argparse.Namespace, message: str, code: int, run_id: str | None = None) -> int:
    if getattr(args, "json", False):
        _print_json({"status": "failed", "error": message, "run_id": run_id})
    else:
        print(f"contact-import: {message}", file=sys.stderr)
    return code


def _check_workspace(args: argparse.Namespace) -> int | None:
    """Exit code 2 (with the reason printed) when --workspace is invalid, else None."""
    try:
        validate_workspace_id(args.workspace)
    except OptionsError as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT)
    return None


def _store(args: argparse.Namespace) -> ContactsStore:
    """The contacts database named by --database-url (or the default), with its tables."""
    store = ContactsStore(args.database_url or default_database_url())
    store.create_schema()
    return store


def _cmd_contacts(args: argparse.Namespace) -> int:
    if (code := _check_workspace(args)) is not None:
        return code
    store = _store(args)
    rows = store.query_contacts(args.workspace, args.tag)
    if args.json:
        _print_json(rows)
    else:
        for row in rows:
            print(f"{row['phone_number']:<16} {row['firstname']} {row['lastname']} <{row['email'] or ''}> {row['tags']}")
        print(f"{len(rows)} contacts")
    return EXIT_OK


def _cmd_demo(_args: argparse.Namespace) -> int:
    sample = resources.files("contact_import_pipeline") / "sample" / "sample-contacts.csv"
    with resources.as_file(sample) as path:
        try:
            summary = run_import(ImportRequest(source=str(path), workspace_id=DEMO_WORKSPACE))
        except ImportFailed as exc:
            print(f"contact-import demo: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(_summary_text(summary))
    home = LOCAL_HOME.resolve()
    print(
        "\nNext: open the Dagster UI on this instance to see the asset graph and this run:\n"
        f"  DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml\n"
        "then browse http://127.0.0.1:3000 (Assets -> contact_import, Runs -> the run above).\n"
        f"Drop a CSV at {Path('.contact_import/bucket').resolve()}/<workspace>/imports/<name>.csv while it runs "
        "and the sensor imports it.\n"
        f"List the imported contacts: .venv/bin/contact-import contacts --workspace {DEMO_WORKSPACE}"
    )
    return EXIT_OK


def _cmd_imports(args: argparse.Namespace) -> int:
    if (code := _check_workspace(args)) is not None:
        return code
    entries = Ledger(_store(args)).entries(workspace_id=args.workspace)
    if args.json:
        _print_json([entry.to_dict() for entry in entries])
        return EXIT_OK
    for e in entries:
        undone = f" | undone {e.undone_at} ({e.undone_count} deleted)" if e.undone_at else ""
        error = f"\n  error: {e.error}" if e.error else ""
        print(
            f"{e.started_at or '-'}  {e.status:<11} {e.import_tag}  {e.file}\n"
            f"  total {e.total} | imported {e.imported} | updated {e.updated} | skipped {e.skipped} | "
            f"failed {e.failed} | ended {e.ended_at or '-'} | {e.origin} | run {e.run_id}{undone}{error}"
        )
    print(f"{len(entries)} imports")
    return EXIT_OK


def _cmd_undo(args: argparse.Namespace) -> int:
    """Count, confirm, delete in one statement, then record the undo in the ledger."""
    if (code := _check_workspace(args)) is not None:
        return code
    store = _store(args)
    ledger = Ledger(store)
    result: dict[str, Any] = {"workspace_id": args.workspace, "import_tag": args.tag}
    count = store.undo_import(args.workspace, args.tag, dry_run=True)
    if args.dry_run:
        return _undo_report(args, result | {"dry_run": True, "would_delete": count},
                            f"would delete {count} contacts created by import {args.tag} in workspace {args.workspace}")
    if count and not args.yes:
        if not sys.stdin.isatty():
            return _fail(args, f"undo would delete {count} contacts; pass --yes to confirm (no terminal to ask)", EXIT_BAD_INPUT)
        answer = input(f"Delete {count} contacts created by import {args.tag} in workspace {args.workspace}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return _fail(args, "undo cancelled; nothing deleted", EXIT_BAD_INPUT)
    deleted = store.undo_import(args.workspace, args.tag)
    ledger.record_undo(args.workspace, args.tag, deleted)
    if deleted:
        message = f"deleted {deleted} contacts created by import {args.tag} in workspace {args.workspace}"
    else:
        stamps = [e.undone_at for e in ledger.entries(workspace_id=args.workspace, import_tag=args.tag) if e.undone_at]
        message = f"nothing to undo: import {args.tag} has no remaining contacts in workspace {args.workspace}" + (
            f" (already undone at {min(stamps)})" if stamps else ""
        )
    return _undo_report(args, result | {"dry_run": False, "deleted": deleted}, message)


def _undo_report(args: argparse.Namespace, result: dict[str, Any], message: str) -> int:
    if args.json:
        _print_json(result)
    else:
        print(message)
    return EXIT_OK


def _add_dagster_options(parser: argparse.ArgumentParser, json_help: str) -> None:
    parser.add_argument(
        "--dagster-url", default=None, help="Dagster webserver (default: $DAGSTER_URL or http://127.0.0.1:3000)"
    )
    parser.add_argument("--json", action="store_true", help=json_help)


def _cmd_trigger(args: argparse.Namespace) -> int:
    try:
        result = trigger_import(
            args.sources,
            args.workspace,
            tag=args.tag,
            board_phone=args.board_phone,
            region=args.region,
            batch_size=args.batch_size,
            dagster_url=args.dagster_url or dagster_url_from_env(),
        )
    except (OptionsError, ImportFileError, DagsterConfigInvalid, DagsterUnreachable) as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT)
    except (DagsterApiError, BucketError) as exc:
        return _fail(args, str(exc), EXIT_FAILED)
    if args.json:
        _print_json({"run_id": result.run_id, "run_url": result.run_url, "files": result.keys})
    else:
        print(f"Launched run {result.run_id} for {', '.join(result.keys)}")
        print(f"  watch it: {result.run_url}")
        print(f"  progress: contact-import status {result.run_id} --follow")
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    """The run's progress, then one line per import; exit 1 when the run or any of its imports failed."""
    api = DagsterApi(args.dagster_url or dagster_url_from_env())
    try:
        state = _follow(api, args) if args.follow else api.read_run(args.run_id)
        reason = _failure_reason(api, state)
    except RunNotFound as exc:
        return _fail(args, str(exc), EXIT_BAD_INPUT, args.run_id)
    except DagsterApiError as exc:
        return _fail(args, str(exc), EXIT_FAILED, args.run_id)
    imports = _run_imports(args, state)
    failed_imports = [e for e in imports or [] if e.status in ("failed", "interrupted")]
    if args.json:
        _print_json(_status_json(api, state, reason) | {"imports": None if imports is None else [e.to_dict() for e in imports]})
    else:
        print(_final_line(state, reason) if state.finished else _progress_line(state))
        for entry in imports or []:
            print(_import_status_line(entry))
        if imports is None:
            print("  (each file's progress is read from the contacts database: pass --database-url)")
    return EXIT_FAILED if reason or (state.finished and failed_imports) else EXIT_OK


def _run_imports(args: argparse.Namespace, state: RunState) -> list[LedgerEntry] | None:
    """The run's imports from the ledger, or None when the contacts database cannot be read here
    (a local SQLite file that does not exist is not created)."""
    url = args.database_url or default_database_url()
    try:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).is_file():
            return None
        store = ContactsStore(url)
    except sa.exc.ArgumentError:
        return None
    try:
        return sorted(Ledger(store).entries(root_run_id=state.root_run_id or state.run_id), key=lambda e: e.position)
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        store.dispose()


def _import_status_line(e: LedgerEntry) -> str:
    line = (
        f"  {e.file} ({e.workspace_id}, {e.import_tag}): {e.status} {e.processed}/{e.total} | imported {e.imported} | "
        f"updated {e.updated} | skipped {e.skipped} | failed {e.failed}"
    )
    return line + (f" | {e.error}" if e.error else "")


def _follow(api: DagsterApi, args: argparse.Namespace) -> RunState:
    """Re-read the run until it ends, drawing each change; survives a webserver restart."""
    interactive = sys.stdout.isatty() and not args.json
    shown: tuple[str, dict[str, Any]] | None = None
    unreachable_since: float | None = None
    while True:
        try:
            state = api.read_run(args.run_id)
            unreachable_since = None
        except DagsterUnreachable:
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > STATUS_RECONNECT_SECONDS:
                raise
            time.sleep(STATUS_POLL_SECONDS)
            continue
        if state.finished:
            if interactive and shown is not None:
                print()  # leave the last bar on its own line
            return state
        if (state.status, state.progress) != shown:
            shown = (state.status, state.progress)
            if args.json:
                _print_json(_status_json(api, state, None))
            else:
                print(("\r" if interactive else "") + _progress_line(state), end="" if interactive else "\n", flush=True)
        time.sleep(STATUS_POLL_SECONDS)


def _failure_reason(api: DagsterApi, state: RunState) -> str | None:
    """Why a finished run failed (None when it did not): the import's own reason, else its steps'."""
    if state.status == "CANCELED":
        return "the run was canceled"
    if state.status != "FAILURE":
        return None
    return state.progress.get("error") or "; ".join(api.step_failures(state.run_id)) or "the run failed"


def _status_json(api: DagsterApi, state: RunState, reason: str | None) -> dict[str, Any]:
    return {
        "run_id": state.run_id,
        "run_status": state.status,
        "run_url": api.run_url(state.run_id),
        "progress": state.progress,
        "error": reason,
    }



def _progress_line(state: RunState) -> str:
    """``[#####-----] 2500/5000 processed | imported 2400 | skipped 60 | failed 40 | batch 5/10 | processing``."""
    p = state.progress
    total, processed = p.get("total"), p.get("processed", 0)
    if not total:
        return f"[{'-' * BAR_WIDTH}] {p.get('status') or state.status.lower()} ({state.status})"
    filled = BAR_WIDTH * min(processed, total) // total
    return (
        f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {processed}/{total} processed | "
        f"imported {p.get('imported', 0)} | skipped {p.get('skipped', 0)} | failed {p.get('failed', 0)} | "
        f"batch {p.get('current_batch', 0)}/{p.get('total_batches', 0)} | {p.get('status', state.status.lower())}"
    )


def _final_line(state: RunState, reason: str | None) -> str:
    if reason:
        return f"run {state.run_id} failed: {reason}"
    p = state.progress
    return (
        f"run {state.run_id} completed: {p.get('total', 0)} rows | imported {p.get('imported', 0)} | "
        f"updated {p.get('updated', 0)} | skipped {p.get('skipped', 0)} | failed {p.get('failed', 0)} | "
        f"batches {p.get('total_batches', 0)}"
    )


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
