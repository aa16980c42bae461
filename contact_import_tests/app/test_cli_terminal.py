"""`contact-import import` as people and scripts run it: a child process on a pseudo-terminal (live
progress), on pipes (the summary and nothing else), and failing on a file (one line; Dagster's
stack trace only with --verbose)."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from contact_import_tests.helpers import write_numbered_csv

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "contact_import_pipeline.app.cli"]
# The same command with every file imported the way a big one is: a process per step.
CLI_STEP_PROCESSES = [
    sys.executable,
    "-c",
    "import os, sys; os.environ['CONTACT_STEP_PROCESSES_BYTES'] = '1'; "
    "from contact_import_pipeline.app import cli; sys.exit(cli.main())",
]
ROWS, BATCH_SIZE, BATCHES = 3000, 1000, 3
ERASE = "\x1b[K"
STAGES = ["reading", "normalizing", "deduplicating", "inserting", "summarizing"]
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def on_terminal(command: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``command`` with a pseudo-terminal as stdin, stdout and stderr: its exit code and all it
    wrote (the terminal turns each ``\\n`` into ``\\r\\n``; turned back here)."""
    parent, child = pty.openpty()
    with subprocess.Popen(command, cwd=cwd, stdin=child, stdout=child, stderr=child) as process:
        os.close(child)
        output = bytearray()
        while True:
            try:
                chunk = os.read(parent, 65536)
            except OSError:  # EIO: every holder of the terminal's other side has closed it
                break
            if not chunk:
                break
            output += chunk
        os.close(parent)
        code = process.wait()
    return code, output.decode().replace("\r\n", "\n")


def summary_lines(workspace: str, run_id: str) -> list[str]:
    return [
        f"Imported {workspace}/imports/people.csv into workspace {workspace} with tag fair",
        f"  total {ROWS} | imported {ROWS} | updated 0 | skipped 0 | failed 0 | batches {BATCHES}",
        f"  run id: {run_id}",
    ]


@pytest.mark.parametrize("command", [CLI, CLI_STEP_PROCESSES], ids=["in_process", "step_processes"])
def test_import_shows_live_progress_on_a_terminal_only(tmp_path: Path, command: list[str]) -> None:
    source = write_numbered_csv(tmp_path / "people.csv", 0, ROWS)
    database = f"sqlite:///{tmp_path / 'contacts.db'}"

    def argv(workspace: str, *extra: str) -> list[str]:
        return [
            *command,
            "import",
            str(source),
            "--workspace",
            workspace,
            "--tag",
            "fair",
            "--batch-size",
            str(BATCH_SIZE),
            "--database-url",
            database,
            *extra,
        ]

    code, output = on_terminal(argv("tty"), tmp_path)
    assert code == 0, output
    # Each drawing is "\r<line>\x1b[K" over the one before; the last is erased and the summary takes its place.
    live, erased, printed = output.rpartition("\r" + ERASE)
    assert erased, output
    drawn = [text.removesuffix(ERASE) for text in live.split("\r") if text]
    assert list(dict.fromkeys(line.rsplit(" ", 1)[-1] for line in drawn)) == STAGES, drawn
    assert drawn[-1] == f"[{'#' * 30}] {ROWS}/{ROWS} rows processed | batch {BATCHES}/{BATCHES} | summarizing"
    run_id = printed.splitlines()[-1].removeprefix("  run id: ")
    assert RUN_ID.fullmatch(run_id), printed
    assert printed.splitlines() == summary_lines("tty", run_id)

    code, output = on_terminal(argv("tty-json", "--json"), tmp_path)
    assert code == 0, output
    (line,) = output.splitlines()
    assert json.loads(line)["imported"] == ROWS

    piped = subprocess.run(argv("piped"), cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert (piped.returncode, piped.stderr) == (0, "")
    run_id = piped.stdout.splitlines()[-1].removeprefix("  run id: ")
    assert piped.stdout == "\n".join(summary_lines("piped", run_id)) + "\n"


BINARY = "people.csv: is a binary file, not CSV text; export the contacts as CSV and upload that"
REFUSED = (
    "http://127.0.0.1:9/people.csv: refused, host '127.0.0.1' resolves to 127.0.0.1, which is not a public "
    "internet address (set CONTACT_IMPORT_ALLOW_PRIVATE_URLS=1 to allow private file servers)"
)


def binary_file(folder: Path) -> str:
    (folder / "people.csv").write_bytes(bytes(range(256)) * 8)
    return "people.csv"


def cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True)


@pytest.mark.parametrize(
    ("make_source", "message"),
    [(binary_file, BINARY), (lambda _folder: "http://127.0.0.1:9/people.csv", REFUSED)],
    ids=["binary file", "refused URL"],
)
def test_a_file_that_cannot_be_imported_is_one_line_and_exit_2(
    tmp_path: Path, make_source: Callable[[Path], str], message: str
) -> None:
    argv = [
        "import",
        make_source(tmp_path),
        "--workspace",
        "ws1",
        "--database-url",
        f"sqlite:///{tmp_path / 'contacts.db'}",
    ]
    plain = cli(argv, tmp_path)
    assert (plain.returncode, plain.stdout, plain.stderr) == (2, "", f"contact-import: {message}\n")

    as_json = cli([*argv, "--json"], tmp_path)
    assert (as_json.returncode, as_json.stderr) == (2, "")
    (line,) = as_json.stdout.splitlines()
    answer = json.loads(line)
    assert RUN_ID.fullmatch(answer.pop("run_id"))
    assert answer == {"status": "failed", "error": message}


def test_verbose_shows_dagster_events_and_the_stack_trace(tmp_path: Path) -> None:
    argv = [
        "import",
        binary_file(tmp_path),
        "--workspace",
        "ws1",
        "--database-url",
        f"sqlite:///{tmp_path / 'c.db'}",
        "--verbose",
    ]
    verbose = cli(argv, tmp_path)
    assert (verbose.returncode, verbose.stdout) == (2, "")
    lines = verbose.stderr.splitlines()
    assert lines[-1] == f"contact-import: {BINARY}"
    assert any(" - raw_csv - STEP_START - " in line for line in lines)
    assert any('STEP_FAILURE - Execution of step "contacts.summarize" failed.' in line for line in lines)
    assert "Stack Trace:" in lines
    assert "    raise dg.Failure(description=reason, allow_retries=False)" in lines
