"""The ``contact-import`` command.

Exit codes: 0 success (a completed import, even with failed or skipped rows), 1 an unexpected
failure (database down, crash), 2 bad input (file-level error, invalid options or arguments).
What each command prints is shaped in ``render``; here are the options and what each command does.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from contact_import_pipeline.app import render
from contact_import_pipeline.app.graphql import (
    DagsterApi,
    DagsterApiError,
    DagsterConfigInvalid,
    DagsterUnreachable,
    RunNotFound,
    RunState,
    dagster_url_from_env,
)
from contact_import_pipeline.app.runner import (
    LOCAL_HOME,
    ImportFailed,
    ImportRequest,
    ProgressListener,
    run_import,
)
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.keys import validate_workspace_id
from contact_import_pipeline.settings import STATUS_POLL_SECONDS, STATUS_RECONNECT_SECONDS
from contact_import_pipeline.storage.bucket import BucketError
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.storage.schema import default_database_url

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEMO_WORKSPACE = "demo"
ERASE_TO_END = "\x1b[K"  # a redrawn line may be shorter than the one it replaces

Command = TypeVar("Command", bound=Callable[..., Any])


def _options(*decorators: Callable[[Command], Command]) -> Callable[[Command], Command]:
    """Several click options as one decorator, listed in the order ``--help`` shows them."""

    def apply(command: Command) -> Command:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


SOURCE_HELP = "SOURCE is a CSV file: a local path, an http(s) URL, or a bucket key <workspace>/imports/<name>.csv."
WORKSPACE = click.option("--workspace", required=True, help="workspace id the contacts belong to")
IMPORT_OPTIONS = _options(
    WORKSPACE,
    click.option("--tag", default="", help="import tag (default: import:<UTC time>Z)"),
    click.option("--board-phone", default="", help="board phone number, stored in metadata.board_phone_number"),
    click.option("--region", default="", help="default region for national numbers (default: US)"),
)
BATCH_SIZE = click.option("--batch-size", type=int, default=None, help="contacts per insert batch")
DATABASE_URL = click.option(
    "--database-url", default=None, help="contacts database URL (default: $CONTACTS_DATABASE_URL or local SQLite)"
)
DAGSTER_URL = click.option(
    "--dagster-url", default=None, help="Dagster webserver (default: $DAGSTER_URL or http://127.0.0.1:3000)"
)


def _json_option(text: str) -> Callable[[Command], Command]:
    return click.option("--json", "as_json", is_flag=True, help=text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def contact_import() -> None:
    """Import contact CSV files, follow their runs, list and undo imports."""


@contact_import.command("import", epilog=SOURCE_HELP)
@click.argument("source")
@IMPORT_OPTIONS
@BATCH_SIZE
@click.option(
    "--on-duplicate",
    type=click.Choice(["skip", "update"]),
    default=None,
    help="existing phone: skip (default) or update empty fields",
)
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=HEADER",
    help="map a contact field to a header of the file, e.g. --map phone='Mobile' (repeatable; "
    "fields: phone, country, full_name, firstname, lastname, email, ...)",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="read, map, normalize and deduplicate, then print what the import would do (mapping, sample contacts, "
    "predicted counts, diagnoses) without writing anything",
)
@DATABASE_URL
@_json_option("print one JSON object")
@click.option(
    "--verbose", is_flag=True, help="print Dagster's events of the run to stderr (a failed step's stack trace too)"
)
def import_command(
    source: str,
    workspace: str,
    tag: str,
    board_phone: str,
    region: str,
    batch_size: int | None,
    on_duplicate: str | None,
    mappings: tuple[str, ...],
    dry_run: bool,
    database_url: str | None,
    as_json: bool,
    verbose: bool,
) -> int:
    """Import a CSV file in this process (no daemon needed), or preview the import with --dry-run."""
    try:
        column_mapping = _column_mapping(mappings)
    except OptionsError as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT)
    request = ImportRequest(
        source=source,
        workspace_id=workspace,
        import_tag=tag,
        board_phone_number=board_phone,
        default_region=region,
        batch_size=batch_size,
        on_duplicate=on_duplicate or "",
        column_mapping=column_mapping,
    )
    # Live progress is for a person at a terminal: a caller reading JSON, a log file or Dagster's
    # own events (--verbose, on the same stream) gets the output of the end only.
    live = not as_json and not verbose and sys.stderr.isatty()
    try:
        validate_workspace_id(workspace)
        with _live_progress(live) as on_progress:
            summary = run_import(
                request, database_url=database_url, verbose=verbose, on_progress=on_progress, dry_run=dry_run
            )
    except OptionsError as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT)
    except ImportFailed as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT if exc.user_error else EXIT_FAILED, exc.run_id)
    click.echo(render.json_text(render.summary_json(summary)) if as_json else render.summary_text(summary))
    return EXIT_OK


def _column_mapping(mappings: tuple[str, ...]) -> dict[str, str]:
    """``--map FIELD=HEADER`` options as the ``column_mapping`` option (quotes around the header are dropped)."""
    out: dict[str, str] = {}
    for item in mappings:
        field, sep, header = item.partition("=")
        if not sep or not field.strip() or not header.strip():
            raise OptionsError(f"--map {item!r}: expected FIELD=HEADER, e.g. --map phone='Mobile Phone'")
        out[field.strip()] = header.strip().strip("'\"")
    return out


@contextmanager
def _live_progress(live: bool) -> Iterator[ProgressListener | None]:
    """A listener that redraws the run's progress on one line of the terminal, erased when the run
    ends (the summary or the error takes its place); None when not ``live``.

    It draws on a copy of stderr's descriptor taken before the run: while steps execute, Dagster
    points this process's stderr at the run's compute log, which is no place for a progress line.
    """
    if not live:
        yield None
        return
    with open(os.dup(sys.stderr.fileno()), "w", encoding=sys.stderr.encoding, errors="replace") as terminal:

        def draw(text: str) -> None:
            terminal.write(f"\r{text}{ERASE_TO_END}")
            terminal.flush()

        try:
            yield lambda seen: draw(render.import_progress_line(seen.stage, seen.progress))
        finally:
            draw("")


def _fail(as_json: bool, message: str, code: int, run_id: str | None = None) -> int:
    if as_json:
        click.echo(render.json_text(render.failure_json(message, run_id)))
    else:
        click.echo(f"contact-import: {message}", err=True)
    return code


def _check_workspace(workspace: str, as_json: bool) -> int | None:
    """Exit code 2 (with the reason printed) when --workspace is invalid, else None."""
    try:
        validate_workspace_id(workspace)
    except OptionsError as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT)
    return None


def _store(database_url: str | None) -> ContactsStore:
    """The contacts database named by --database-url (or the default), with its tables."""
    store = ContactsStore(database_url or default_database_url())
    store.create_schema()
    return store


@contact_import.command("contacts")
@WORKSPACE
@click.option("--tag", default=None, help="only contacts carrying this import tag")
@DATABASE_URL
@_json_option("print a JSON list")
def contacts_command(workspace: str, tag: str | None, database_url: str | None, as_json: bool) -> int:
    """List a workspace's contacts."""
    if (code := _check_workspace(workspace, as_json)) is not None:
        return code
    rows = _store(database_url).query_contacts(workspace, tag)
    if as_json:
        click.echo(render.json_text(rows))
    else:
        for row in rows:
            click.echo(render.contact_line(row))
        click.echo(f"{len(rows)} contacts")
    return EXIT_OK


@contact_import.command("demo")
def demo_command() -> int:
    """Import the bundled sample into the local default and explain what to do next."""
    sample = resources.files("contact_import_pipeline") / "sample" / "sample-contacts.csv"
    with resources.as_file(sample) as path:
        try:
            summary = run_import(ImportRequest(source=str(path), workspace_id=DEMO_WORKSPACE))
        except ImportFailed as exc:
            click.echo(f"contact-import demo: {exc}", err=True)
            return EXIT_FAILED
    click.echo(render.summary_text(summary))
    home = LOCAL_HOME.resolve()
    click.echo(
        "\nNext: open the Dagster UI on this instance to see the asset graph and this run:\n"
        f"  DAGSTER_HOME={home} .venv/bin/dagster dev -w workspace.yaml\n"
        "then browse http://127.0.0.1:3000 (Assets -> contact_import, Runs -> the run above).\n"
        f"Drop a CSV at {Path('.contact_import/bucket').resolve()}/<workspace>/imports/<name>.csv while it runs "
        "and the sensor imports it.\n"
        f"List the imported contacts: .venv/bin/contact-import contacts --workspace {DEMO_WORKSPACE}"
    )
    return EXIT_OK


@contact_import.command("imports")
@WORKSPACE
@DATABASE_URL
@_json_option("print a JSON list")
def imports_command(workspace: str, database_url: str | None, as_json: bool) -> int:
    """List a workspace's imports, newest first (from the ledger)."""
    if (code := _check_workspace(workspace, as_json)) is not None:
        return code
    entries = Ledger(_store(database_url)).entries(workspace_id=workspace)
    if as_json:
        click.echo(render.json_text([entry.to_dict() for entry in entries]))
        return EXIT_OK
    for entry in entries:
        click.echo(render.history_text(entry))
    click.echo(f"{len(entries)} imports")
    return EXIT_OK


@contact_import.command("undo")
@click.argument("tag")
@WORKSPACE
@click.option("--dry-run", is_flag=True, help="only print how many contacts would be deleted")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@DATABASE_URL
@_json_option("print one JSON object")
def undo_command(tag: str, workspace: str, dry_run: bool, yes: bool, database_url: str | None, as_json: bool) -> int:
    """Delete the contacts an import created (never those it skipped or updated); TAG is the import tag.

    Count, confirm, delete in one statement, then record the undo in the ledger.
    """
    if (code := _check_workspace(workspace, as_json)) is not None:
        return code
    store = _store(database_url)
    ledger = Ledger(store)
    result: dict[str, Any] = {"workspace_id": workspace, "import_tag": tag}
    count = store.undo_import(workspace, tag, dry_run=True)
    if dry_run:
        return _report(
            as_json,
            result | {"dry_run": True, "would_delete": count},
            f"would delete {count} contacts created by import {tag} in workspace {workspace}",
        )
    if count and not yes:
        if not sys.stdin.isatty():
            return _fail(
                as_json,
                f"undo would delete {count} contacts; pass --yes to confirm (no terminal to ask)",
                EXIT_BAD_INPUT,
            )
        answer = input(f"Delete {count} contacts created by import {tag} in workspace {workspace}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            return _fail(as_json, "undo cancelled; nothing deleted", EXIT_BAD_INPUT)
    deleted = store.undo_import(workspace, tag)
    ledger.record_undo(workspace, tag, deleted)
    if deleted:
        message = f"deleted {deleted} contacts created by import {tag} in workspace {workspace}"
    else:
        stamps = [e.undone_at for e in ledger.entries(workspace_id=workspace, import_tag=tag) if e.undone_at]
        message = f"nothing to undo: import {tag} has no remaining contacts in workspace {workspace}" + (
            f" (already undone at {min(stamps)})" if stamps else ""
        )
    return _report(as_json, result | {"dry_run": False, "deleted": deleted}, message)


def _report(as_json: bool, result: dict[str, Any], message: str) -> int:
    click.echo(render.json_text(result) if as_json else message)
    return EXIT_OK


@contact_import.command("trigger", epilog=SOURCE_HELP + " Several: one run imports them all, in this order.")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@IMPORT_OPTIONS
@BATCH_SIZE
@DAGSTER_URL
@_json_option("print one JSON object {run_id, run_url, files}")
def trigger_command(
    sources: tuple[str, ...],
    workspace: str,
    tag: str,
    board_phone: str,
    region: str,
    batch_size: int | None,
    dagster_url: str | None,
    as_json: bool,
) -> int:
    """Launch one run importing one or more files on the Dagster daemon over GraphQL."""
    try:
        result = trigger_import(
            list(sources),
            workspace,
            tag=tag,
            board_phone=board_phone,
            region=region,
            batch_size=batch_size,
            dagster_url=dagster_url or dagster_url_from_env(),
        )
    except (OptionsError, ImportFileError, DagsterConfigInvalid, DagsterUnreachable) as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT)
    except (DagsterApiError, BucketError) as exc:
        return _fail(as_json, str(exc), EXIT_FAILED)
    if as_json:
        click.echo(render.json_text({"run_id": result.run_id, "run_url": result.run_url, "files": result.keys}))
    else:
        click.echo(f"Launched run {result.run_id} for {', '.join(result.keys)}")
        click.echo(f"  watch it: {result.run_url}")
        click.echo(f"  progress: contact-import status {result.run_id} --follow")
    return EXIT_OK


@contact_import.command("status")
@click.argument("run_id")
@click.option("--follow", is_flag=True, help="draw a progress bar until the run ends")
@click.option(
    "--database-url",
    default=None,
    help="contacts database holding the ledger (default: $CONTACTS_DATABASE_URL or local SQLite)",
)
@DAGSTER_URL
@_json_option("print JSON (with --follow: one object per change, the last one final)")
def status_command(run_id: str, follow: bool, database_url: str | None, dagster_url: str | None, as_json: bool) -> int:
    """Show a run's progress (over GraphQL) and each of its imports (from the ledger).

    Exit 1 when the run or any of its imports failed.
    """
    api = DagsterApi(dagster_url or dagster_url_from_env())
    try:
        state = _follow(api, run_id, as_json) if follow else api.read_run(run_id)
        reason = _failure_reason(api, state)
    except RunNotFound as exc:
        return _fail(as_json, str(exc), EXIT_BAD_INPUT, run_id)
    except DagsterApiError as exc:
        return _fail(as_json, str(exc), EXIT_FAILED, run_id)
    imports = _run_imports(database_url, state)
    failed_imports = [e for e in imports or [] if e.status in ("failed", "interrupted")]
    if as_json:
        click.echo(
            render.json_text(
                render.status_json(state, api.run_url(state.run_id), reason)
                | {
                    "imports": None if imports is None else [e.to_dict() for e in imports],
                }
            )
        )
    else:
        click.echo(render.final_line(state, reason) if state.finished else render.progress_line(state))
        for entry in imports or []:
            click.echo(render.import_status_line(entry))
        if imports is None:
            click.echo("  (each file's progress is read from the contacts database: pass --database-url)")
    return EXIT_FAILED if reason or (state.finished and failed_imports) else EXIT_OK


def _run_imports(database_url: str | None, state: RunState) -> list[LedgerEntry] | None:
    """The run's imports from the ledger, or None when the contacts database cannot be read here
    (a local SQLite file that does not exist is not created)."""
    url = database_url or default_database_url()
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


def _follow(api: DagsterApi, run_id: str, as_json: bool) -> RunState:
    """Re-read the run until it ends, drawing each change; survives a webserver restart."""
    interactive = sys.stdout.isatty() and not as_json
    shown: tuple[str, dict[str, Any]] | None = None
    unreachable_since: float | None = None
    while True:
        try:
            state = api.read_run(run_id)
            unreachable_since = None
        except DagsterUnreachable:
            unreachable_since = unreachable_since or time.monotonic()
            if time.monotonic() - unreachable_since > STATUS_RECONNECT_SECONDS:
                raise
            time.sleep(STATUS_POLL_SECONDS)
            continue
        if state.finished:
            if interactive and shown is not None:
                click.echo()  # leave the last bar on its own line
            return state
        if (state.status, state.progress) != shown:
            shown = (state.status, state.progress)
            if as_json:
                click.echo(render.json_text(render.status_json(state, api.run_url(state.run_id), None)))
            elif interactive:
                click.echo("\r" + render.progress_line(state), nl=False)
            else:
                click.echo(render.progress_line(state))
        time.sleep(STATUS_POLL_SECONDS)


def _failure_reason(api: DagsterApi, state: RunState) -> str | None:
    """Why a finished run failed (None when it did not): the import's own reason, else its steps'."""
    if state.status == "CANCELED":
        return "the run was canceled"
    if state.status != "FAILURE":
        return None
    return state.progress.get("error") or "; ".join(api.step_failures(state.run_id)) or "the run failed"


def main(argv: list[str] | None = None) -> int:
    """Run the command and return its exit code (the console script exits with it).

    Click's standalone mode would exit the interpreter itself; callers and tests need the code.
    """
    try:
        code = contact_import.main(args=argv, prog_name="contact-import", standalone_mode=False)
    except click.ClickException as exc:  # a usage error: wrong or missing arguments (exit code 2)
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C or end of input while a command ran
        click.echo("Aborted!", err=True)
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
