"""Every file of the hostile-input corpus imported with the CLI: exact counts, reasons, rows and contents.

`corpus/expected.json` says, per file, either the file-level error (exit 2, nothing inserted) or
the exact totals, reasons, rejected rows and some stored contacts. The 1M-row test generates its
file at test time (seeded) and measures the import's peak memory in a subprocess.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bench.common import TreeSampler
from contact_import_pipeline.importing.rejects import SKIP_REASONS
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import import_batches
from contact_import_tests.helpers import TESTS_DIR, run_cli

CORPUS = TESTS_DIR / "corpus"
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
WORKSPACE = "ws-corpus"
TAG = "corpus-test"
# A handful that exercise what differs on PostgreSQL: COPY of odd text, NUL rejects, verbatim payloads.
POSTGRES_FILES = (
    "cp1252_smart_quotes.csv",
    "emoji_rtl.csv",
    "formula_payloads.csv",
    "german_outlook.csv",
    "gzip_renamed.csv",
    "nul_in_field.csv",
    "quoted_newlines.csv",
    "sql_values.csv",
    "unterminated_quote.csv",
)
MAX_RSS_BYTES = 1024**3  # the per-process budget of the performance issue
CORPUS_FILES = 45  # CSV files in the corpus, beside expected.json and make_corpus.py


def test_corpus_is_complete_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder holds exactly the corpus (a file added or lost is noticed), every file has an
    expectation, and make_corpus.py regenerates the same bytes."""
    files = sorted(p.name for p in CORPUS.iterdir() if p.is_file())
    assert len(files) == CORPUS_FILES + 2
    assert [name for name in files if not name.endswith(".csv")] == ["expected.json", "make_corpus.py"]
    committed = {p.name: p.read_bytes() for p in CORPUS.glob("*.csv")}
    assert len(committed) == CORPUS_FILES
    assert sorted(committed) == sorted(EXPECTED)
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == committed


def import_corpus_file(name: str, database_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """Run `contact-import import <file> --json` in this process; return the exit code and the JSON."""
    result = run_cli(
        [
            "import",
            str(CORPUS / name),
            "--workspace",
            WORKSPACE,
            "--tag",
            TAG,
            "--database-url",
            database_url,
            "--json",
        ],
        capsys,
    )
    return result.code, result.json()


def read_rejects(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.reader(handle))


def check_corpus_file(name: str, database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = EXPECTED[name]
    code, result = import_corpus_file(name, database_url, capsys)
    store = ContactsStore(database_url)
    store.create_schema()
    stored = store.query_contacts(WORKSPACE)
    with store.connect() as conn:
        batches = conn.execute(sa.select(sa.func.count()).select_from(import_batches)).scalar_one()
    store.dispose()

    if "error_contains" in expected:
        assert (code, result["status"]) == (2, "failed"), result
        assert result["error"].startswith(f"{name}: "), result["error"]
        for words in expected["error_contains"]:
            assert words in result["error"], result["error"]
        assert (stored, batches) == ([], 0)
        return

    assert code == 0, result
    counts = {k: result[k] for k in ("status", "total", "imported", "updated", "skipped", "failed")}
    assert counts == {
        "status": "completed",
        "total": expected["total"],
        "imported": expected["imported"],
        "updated": 0,
        "skipped": sum(expected["skipped"].values()),
        "failed": sum(expected["failed"].values()),
    }
    assert (result["skipped_by_reason"], result["failed_by_reason"]) == (expected["skipped"], expected["failed"])
    reject_rows = [tuple(r) for r in expected["reject_rows"]]
    assert [(e["row"], e["reason"]) for e in result["errors"]] == [r for r in reject_rows if r[1] not in SKIP_REASONS][
        :10
    ]

    by_phone = {row["phone_number"]: row for row in stored}
    assert len(stored) == expected["imported"]
    for phone, fields in expected["contacts"].items():
        assert phone in by_phone, sorted(by_phone)
        assert {field: by_phone[phone][field] for field in fields} == fields
    assert all(row["tags"] == [TAG] and row["workspace_id"] == WORKSPACE for row in stored)

    if not reject_rows:
        assert result["rejects_file"] is None
        return
    rejects = read_rejects(result["rejects_file"])
    assert [(int(r[-3]), r[-2]) for r in rejects[1:]] == reject_rows
    if "rejects_csv" in expected:
        assert rejects == expected["rejects_csv"]
    if "rejects_columns" in expected:
        assert {len(r) for r in rejects} == {expected["rejects_columns"]}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_sqlite(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    check_corpus_file(name, f"sqlite:///{tmp_path / 'contacts.db'}", capsys)


@pytest.mark.parametrize("name", POSTGRES_FILES)
def test_corpus_file_postgres(name: str, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    check_corpus_file(name, pg_url, capsys)


def write_million_rows(path: Path, rows: int, seed: int = 7) -> dict[str, int]:
    """A seeded 1M-row export with every 1000 rows holding 1 invalid, 1 empty and 1 repeated phone.

    Returns the exact counts the import must report. Phones are distinct valid NYC numbers
    (212) 2xx-xxxx, formatted three ways so parsing is exercised, not just the exact fast path.
    """
    rng = random.Random(seed)
    formats = ("({a}) {e}-{l}", "+1 {a} {e} {l}", "{a}.{e}.{l}")
    counts = {"invalid_phone": 0, "missing_phone": 0, "duplicate_in_file": 0}
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("First Name,Last Name,Email,Mobile Phone,City\n")
        lines = []
        for i in range(rows):
            kind = i % 1000
            if kind == 7:
                phone = "12345"
                counts["invalid_phone"] += 1
            elif kind == 13:
                phone = ""
                counts["missing_phone"] += 1
            else:
                n = i - 1 if kind == 21 else i
                if kind == 21:
                    counts["duplicate_in_file"] += 1
                phone = rng.choice(formats).format(a="212", e=f"{200 + n // 10000:03d}", l=f"{n % 10000:04d}")
            lines.append(f"First{i},Last{i},user{i}@example.com,{phone},City{i % 97}\n")
            if len(lines) == 50_000:
                handle.writelines(lines)
                lines.clear()
        handle.writelines(lines)
    return counts


@pytest.mark.slow
def test_million_rows_exact_counts_and_bounded_memory(tmp_path: Path) -> None:
    """1,000,000 rows through `contact-import import --json` in a subprocess; every process < 1 GiB."""
    rows = 1_000_000
    source = tmp_path / "million.csv"
    counts = write_million_rows(source, rows)
    started = time.perf_counter()
    # A file this large runs a process per step (from the command's forkserver), so the budget is
    # checked on every process of the command's tree, by each one's own high-water mark.
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "contact-import"),
            "import",
            str(source),
            "--workspace",
            "ws-million",
            "--tag",
            "million",
            "--database-url",
            f"sqlite:///{tmp_path / 'contacts.db'}",
            "--json",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with TreeSampler(proc.pid) as sampler:
        stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    peak_kib = sampler.largest_kib
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    print(
        f"\n1M rows: {seconds:.1f} s wall, largest process {peak_kib / 1024:.0f} MiB, "
        f"file {source.stat().st_size / 1e6:.0f} MB, timings {result['timings']}"
    )
    failed = counts["invalid_phone"] + counts["missing_phone"]
    assert {k: result[k] for k in ("status", "total", "imported", "skipped", "failed", "batches")} == {
        "status": "completed",
        "total": rows,
        "imported": rows - failed - counts["duplicate_in_file"],
        "skipped": counts["duplicate_in_file"],
        "failed": failed,
        "batches": 10,
    }
    assert result["skipped_by_reason"] == {"duplicate_in_file": 1000}
    assert result["failed_by_reason"] == {"invalid_phone": 1000, "missing_phone": 1000}
    assert [(e["row"], e["reason"]) for e in result["errors"][:2]] == [(9, "invalid_phone"), (15, "missing_phone")]
    store = ContactsStore(f"sqlite:///{tmp_path / 'contacts.db'}")
    assert store.count_contacts("ws-million") == rows - 3000
    store.dispose()
    assert peak_kib * 1024 < MAX_RSS_BYTES, f"peak RSS {peak_kib / 1024:.0f} MiB"
