"""Security properties: tenant isolation, SQL only through parameters, safe keys, formula escaping,
size caps, and no other rows' personal data in failure messages or run tags.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

import contact_import_pipeline
from contact_import_pipeline.app.runner import ImportFailed, ImportRequest, local_instance, run_import
from contact_import_pipeline.defs.progress import TAG_PREFIX
from contact_import_pipeline.importing.rejects import escape_cell, rejects_csv
from contact_import_pipeline.keys import UnsafeKeyError, check_safe_key, parse_import_key
from contact_import_pipeline.model import CONTACT_FIELDS, Reject
from contact_import_pipeline.settings import MAX_COLUMNS_ENV, MAX_FIELD_CHARS_ENV, MAX_FILE_BYTES_ENV
from contact_import_pipeline.storage import writers
from contact_import_pipeline.storage.bucket import LocalFolderBucket
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import contacts, import_batches
from contact_import_tests.helpers import run_cli, write_csv

PIPELINE = Path(contact_import_pipeline.__file__).parent
# A word that appears only inside hostile payloads, so finding it in SQL text means a payload got in.
MARKER = "xyzzy"


def cli_import(
    capsys: pytest.CaptureFixture[str], source: Path | str, workspace: str, database_url: str, *extra: str
) -> tuple[int, dict[str, Any]]:
    """``contact-import import <source> --json``: its exit code and summary."""
    result = run_cli(
        ["import", str(source), "--workspace", workspace, "--database-url", database_url, "--json", *extra], capsys
    )
    return result.code, result.json()


# --- tenant isolation --------------------------------------------------------------------------

PHONES = [f"(202) 555-03{i:02d}" for i in range(1, 7)]
E164 = [f"+120255503{i:02d}" for i in range(1, 7)]


def workspace_checksum(database_url: str, workspace_id: str) -> tuple[int, str]:
    """Row count and sha256 of every column of a workspace's contacts and batch records, in a fixed order."""
    store = ContactsStore(database_url)
    with store.connect() as conn:
        people = conn.execute(
            sa.select(contacts).where(contacts.c.workspace_id == workspace_id).order_by(contacts.c.phone_number)
        ).all()
        ledger = conn.execute(
            sa.select(import_batches)
            .where(import_batches.c.workspace_id == workspace_id)
            .order_by(import_batches.c.import_id, import_batches.c.batch_index)
        ).all()
    store.dispose()
    payload = json.dumps([[list(row) for row in people], [list(row) for row in ledger]], default=str, sort_keys=True)
    return len(people), hashlib.sha256(payload.encode()).hexdigest()


def test_imports_never_touch_other_workspaces(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three workspaces share phone numbers; imports into ws-a (skip, re-import, update, forged key) leave ws-b and ws-c byte-identical."""
    seed_a = write_csv(
        tmp_path / "seed_a.csv", ["Name", "Phone", "City"], [[f"A{i}", p, ""] for i, p in enumerate(PHONES[:3])]
    )
    seed_bc = write_csv(
        tmp_path / "seed_bc.csv", ["Name", "Phone", "City"], [[f"B{i}", p, ""] for i, p in enumerate(PHONES[:5])]
    )
    main = write_csv(
        tmp_path / "main.csv", ["Name", "Phone", "City"], [[f"M{i}", p, f"City{i}"] for i, p in enumerate(PHONES)]
    )
    for source, workspace in ((seed_a, "ws-a"), (seed_bc, "ws-b"), (seed_bc, "ws-c")):
        assert cli_import(capsys, source, workspace, database_url)[0] == 0
    others = {ws: workspace_checksum(database_url, ws) for ws in ("ws-b", "ws-c")}
    assert {ws: count for ws, (count, _) in others.items()} == {"ws-b": 5, "ws-c": 5}

    steps = [
        ((), {"imported": 3, "updated": 0, "skipped": 3}),  # phones of ws-b/ws-c are new in ws-a
        ((), {"imported": 0, "updated": 0, "skipped": 6}),  # re-import: all duplicate_existing
        (("--on-duplicate", "update"), {"imported": 0, "updated": 6, "skipped": 0}),
    ]
    for extra, counts in steps:
        code, result = cli_import(capsys, main, "ws-a", database_url, *extra)
        assert code == 0, result
        assert {k: result[k] for k in counts} == counts
        assert {ws: workspace_checksum(database_url, ws) for ws in others} == others

    # A bucket key of ws-b imported "as" ws-a is refused before anything is read or written.
    forged = Path(".contact_import/bucket/ws-b/imports/forged.csv")
    forged.parent.mkdir(parents=True)
    forged.write_bytes(main.read_bytes())
    code, result = cli_import(capsys, "ws-b/imports/forged.csv", "ws-a", database_url)
    assert code == 2
    assert result["error"] == "workspace_id 'ws-a' does not match the file's workspace 'ws-b' (ws-b/imports/forged.csv)"
    assert forged.exists()
    assert {ws: workspace_checksum(database_url, ws) for ws in others} == others

    store = ContactsStore(database_url)
    cities = {
        (r["workspace_id"], r["phone_number"]): r["city"] for ws in ("ws-a", "ws-b") for r in store.query_contacts(ws)
    }
    store.dispose()
    assert cities[("ws-a", E164[0])] == "City0"  # filled by the update in ws-a only
    assert cities[("ws-b", E164[0])] == ""
    assert sorted(p for ws, p in cities if ws == "ws-a") == E164


# --- SQL only through bind parameters or COPY ---------------------------------------------------


@contextmanager
def recorded_sql(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every SQL text sent to a database in this process: SQLAlchemy statements and raw psycopg calls."""
    statements: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def text_of(query: Any) -> str:
        return query.decode() if isinstance(query, bytes) else query if isinstance(query, str) else repr(query)

    original_execute, original_copy = psycopg.Cursor.execute, psycopg.Cursor.copy

    def execute(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(text_of(query))
        return original_execute(self, query, *args, **kwargs)

    def copy(self: psycopg.Cursor, statement: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(text_of(statement))
        return original_copy(self, statement, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    monkeypatch.setattr(psycopg.Cursor, "copy", copy)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", on_execute)
    try:
        yield statements
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", on_execute)


def seed_other_workspace(database_url: str, tmp_path: Path) -> tuple[int, str]:
    seed = write_csv(tmp_path / "seed.csv", ["Name", "Phone"], [["Bea", PHONES[0]], ["Cal", PHONES[1]]])
    run_import(ImportRequest(source=str(seed), workspace_id="ws-b"), database_url=database_url)
    return workspace_checksum(database_url, "ws-b")


def test_sql_in_headers_values_and_mapping_is_plain_text(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers and values full of SQL are imported verbatim; none of it reaches a statement's text."""
    before = seed_other_workspace(database_url, tmp_path)
    phone_header = f'Tel"); DROP TABLE contacts;-- {MARKER}'
    source = write_csv(
        tmp_path / "sql.csv",
        ["First Name", phone_header, f"City'; DELETE FROM contacts;-- {MARKER}"],
        [
            [f"Robert'); DROP TABLE contacts;-- {MARKER}", PHONES[0], "x"],
            ["Ann", PHONES[1], f"'); DELETE FROM contacts WHERE '{MARKER}'='{MARKER}"],
        ],
    )
    with recorded_sql(monkeypatch) as statements:
        summary = run_import(
            ImportRequest(source=str(source), workspace_id="ws-a", column_mapping={"phone": phone_header}),
            database_url=database_url,
        )
    assert (summary["imported"], summary["failed"], summary["skipped"]) == (2, 0, 0)
    assert any("INSERT INTO contacts" in s or s.startswith("COPY contacts") for s in statements)  # it saw the inserts
    assert [s for s in statements if MARKER in s] == []
    store = ContactsStore(database_url)
    names = sorted(r["firstname"] for r in store.query_contacts("ws-a"))
    store.dispose()
    assert names == ["Ann", f"Robert'); DROP TABLE contacts;-- {MARKER}"]
    assert workspace_checksum(database_url, "ws-b") == before


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (
            {"phone": f'Phone"; DROP TABLE contacts;-- {MARKER}'},
            f"""map.csv: column_mapping 'phone': 'Phone"; DROP TABLE contacts;-- {MARKER}' is not a header of this file; """
            "headers were: 'Name', 'Phone'",
        ),
        (
            {f'phone"; DROP TABLE contacts;-- {MARKER}': "Phone"},
            f"""map.csv: column_mapping has unknown field 'phone"; DROP TABLE contacts;-- {MARKER}'; known fields are """,
        ),
    ],
    ids=["sql-in-header-name", "sql-in-field-name"],
)
def test_column_mapping_with_sql_is_refused_before_any_sql(
    mapping: dict[str, str], message: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = seed_other_workspace(database_url, tmp_path)
    source = write_csv(tmp_path / "map.csv", ["Name", "Phone"], [["Ann", PHONES[2]]])
    with recorded_sql(monkeypatch) as statements, pytest.raises(ImportFailed) as failure:
        run_import(
            ImportRequest(source=str(source), workspace_id="ws-a", column_mapping=mapping), database_url=database_url
        )
    assert failure.value.user_error
    assert str(failure.value).startswith(message)
    assert [s for s in statements if MARKER in s] == []
    assert workspace_checksum(database_url, "ws-a")[0] == 0
    assert workspace_checksum(database_url, "ws-b") == before


SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|COPY|WHERE|SET|CONFLICT|CASE)\b")
# Reviewed: the only SQL text built with f-strings. Each interpolates a module constant made of
# column names (BATCH_COLUMNS / CONTACT_FIELDS) or a constant ON CONFLICT clause; never a value.
REVIEWED_SQL_FSTRINGS = {
    ("writers.py", ("c",) * 6),  # _PG_FILL: one CASE per contact field
    ("writers.py", ("_PG_FILL",)),  # _PG_ON_CONFLICT[True]
    ("writers.py", ("_STAGE_TABLE", "', '.join((c + ' text' for c in BATCH_COLUMNS))")),  # CREATE TEMP TABLE stage
    ("writers.py", ("_STAGE_TABLE", "_STAGE_COLUMNS")),  # COPY stage (...) FROM STDIN
    ("writers.py", ("_DIRECT_COLUMNS",)),  # COPY contacts (...) FROM STDIN
    # INSERT … SELECT from the stage, joined back to the stage for the rows that did not land
    ("writers.py", ("_STAGE_COLUMNS", "_STAGE_COLUMNS", "_STAGE_TABLE", "_PG_ON_CONFLICT[update]", "_STAGE_TABLE")),
}


def sql_built_from_strings() -> set[tuple[str, tuple[str, ...]]]:
    """Every piece of SQL-looking text built by interpolation (f-string, %, +, .format) in the package."""
    found: set[tuple[str, tuple[str, ...]]] = set()
    for path in sorted(PIPELINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    found.add(
                        (
                            path.name,
                            tuple(ast.unparse(v.value) for v in node.values if isinstance(v, ast.FormattedValue)),
                        )
                    )
            elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
                for side in (node.left, node.right):
                    if isinstance(side, ast.Constant) and isinstance(side.value, str) and SQL_WORDS.search(side.value):
                        found.add((path.name, ("<% or + on SQL text>", ast.unparse(node))))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
                target = node.func.value
                if (
                    isinstance(target, ast.Constant)
                    and isinstance(target.value, str)
                    and SQL_WORDS.search(target.value)
                ):
                    found.add((path.name, ("<.format on SQL text>", ast.unparse(node))))
    return found


def test_sql_text_is_built_only_from_reviewed_constants() -> None:
    """A new f-string / % / + / .format building SQL fails this test until it is reviewed."""
    assert sql_built_from_strings() == REVIEWED_SQL_FSTRINGS
    # What those f-strings interpolate: plain column names of the contacts table, and constant clauses.
    columns = set(contacts.c.keys())
    for name in writers.BATCH_COLUMNS + CONTACT_FIELDS:
        assert re.fullmatch(r"[a-z_]+", name) and name in columns, name
    assert ", ".join(writers.BATCH_COLUMNS) == writers._STAGE_COLUMNS
    assert re.fullmatch(r"[a-z_]+", writers._STAGE_TABLE)
    assert ", ".join([*writers.BATCH_COLUMNS, "workspace_id", "tags", "metadata"]) == writers._DIRECT_COLUMNS
    assert set(writers._PG_ON_CONFLICT) == {False, True}
    assert all(isinstance(clause, str) for clause in writers._PG_ON_CONFLICT.values())


# --- unsafe bucket keys -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ws-a/imports/../ws-b/imports/x.csv",
        "ws-a/imports/..",
        "../imports/x.csv",
        "ws-a/imports/./x.csv",
        "ws-a//imports/x.csv",
        "ws-a/imports//x.csv",
        "/ws-a/imports/x.csv",
        "ws-a/imports/x.csv/",
        "ws-a\\imports\\x.csv",
        "ws-a/imports/..\\..\\x.csv",
        "ws-a/imports/%2e%2e%2fx.csv",
        "ws-a/imports/x%00.csv",
        "ws-a/imports/x\x00.csv",
        "ws-a/imports/x\n.csv",
        "ws-a/imports/x\r.csv",
        "ws-a/imports/\x1b[2Jx.csv",
        "ws-a/imports/\u202ex.csv",
        "ws-a/imports/x\u200b.csv",
        "ws a/imports/x.csv",
        "-ws/imports/x.csv",
        "_ws/imports/x.csv",
        "ws.a/imports/x.csv",
        f"{'w' * 65}/imports/x.csv",
        "ws-a/imports/sub/x.csv",
        "ws-a/uploads/x.csv",
        "ws-a/imports/x.txt",
        "ws-a/imports",
        "ws-a",
    ],
)
def test_unsafe_import_keys_are_refused(key: str) -> None:
    with pytest.raises(UnsafeKeyError):
        parse_import_key(key)


@pytest.mark.parametrize(
    ("key", "workspace", "name"),
    [
        ("ws-a/imports/x.csv", "ws-a", "x.csv"),
        (
            "0b1c9f3e-5d2a-4c7b-9e1f-2a3b4c5d6e7f/imports/Contacts (1).CSV",
            "0b1c9f3e-5d2a-4c7b-9e1f-2a3b4c5d6e7f",
            "Contacts (1).CSV",
        ),
        (f"{'w' * 64}/imports/ünïcode name.csv", "w" * 64, "ünïcode name.csv"),
    ],
)
def test_safe_import_keys_parse(key: str, workspace: str, name: str) -> None:
    parsed = parse_import_key(key)
    assert (parsed.workspace_id, parsed.name, parsed.key) == (workspace, name, key)


@pytest.mark.parametrize("key", ["a/../b", "a//b", "/a", "a\\b", "a%2fb", "a\x7fb", ".", "a/./b"])
def test_bucket_refuses_unsafe_keys_for_any_folder(key: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafeKeyError):
        check_safe_key(key)
    bucket = LocalFolderBucket(root=str(tmp_path / "bucket"))
    with pytest.raises(UnsafeKeyError):
        bucket.write_bytes(key, b"x")
    assert not (tmp_path / "bucket").exists() or list((tmp_path / "bucket").rglob("*")) == []


# --- formula injection in files we write back ---------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "escaped"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("+SUM(1)", "'+SUM(1)"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1+2", "'\t=1+2"),
        ("\r=1+2", "'\r=1+2"),
        ("+12025550101", "'+12025550101"),
        ("Ann", "Ann"),
        ("a=b", "a=b"),
        ("", ""),
        ("'=already", "'=already"),
        (" =1", " =1"),
    ],
)
def test_escape_cell(cell: str, escaped: str) -> None:
    assert escape_cell(cell) == escaped


def test_rejects_file_escapes_header_values_phones_and_detail() -> None:
    rejects = [
        Reject(
            row=2,
            reason="invalid_phone",
            detail='=HYPERLINK("http://evil.example")',
            values=["=1+2", "+1 202 555 0101", "@x"],
        ),
        Reject(
            row=3,
            reason="duplicate_in_file",
            detail="same phone +12025550101 as row 2",
            values=["-5", "\tTab", "ok", "extra=1"],
        ),
    ]
    text = rejects_csv(["=Name", "Phone", "Note"], rejects).decode("utf-8")
    assert text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text[1:], newline=""))) == [
        ["'=Name", "Phone", "Note", "extra_4", "row", "reason", "detail"],
        ["'=1+2", "'+1 202 555 0101", "'@x", "", "2", "invalid_phone", '\'=HYPERLINK("http://evil.example")'],
        ["'-5", "'\tTab", "ok", "extra=1", "3", "duplicate_in_file", "same phone +12025550101 as row 2"],
    ]


# --- size limits from the environment -----------------------------------------------------------


def test_byte_cap_from_env_refuses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv(MAX_FILE_BYTES_ENV, "100")
    small = write_csv(tmp_path / "small.csv", ["Name", "Phone"], [["Ann", PHONES[0]]])
    big = write_csv(tmp_path / "big.csv", ["Name", "Phone"], [[f"Person {i}", PHONES[i]] for i in range(6)])
    assert small.stat().st_size <= 100 < big.stat().st_size
    code, result = cli_import(capsys, big, "ws-a", url)
    assert code == 2
    assert result["error"] == f"{big.resolve()}: file is {big.stat().st_size} bytes, over the limit of 100 bytes"
    # The same cap applies to a bucket object.
    key = Path(".contact_import/bucket/ws-a/imports/big.csv")
    key.parent.mkdir(parents=True)
    key.write_bytes(big.read_bytes())
    code, result = cli_import(capsys, "ws-a/imports/big.csv", "ws-a", url)
    assert code == 2
    assert result["error"] == (
        f"ws-a/imports/big.csv: file is {big.stat().st_size} bytes, over the limit of 100 bytes; "
        "split it into smaller files or raise CONTACT_IMPORT_MAX_FILE_BYTES"
    )
    assert cli_import(capsys, small, "ws-a", url)[1]["imported"] == 1


def test_column_cap_from_env_refuses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv(MAX_COLUMNS_ENV, "3")
    wide = write_csv(tmp_path / "wide.csv", ["Name", "Phone", "City", "Zip"], [["Ann", PHONES[0], "X", "1"]])
    code, result = cli_import(capsys, wide, "ws-a", url)
    assert code == 2
    assert result["error"].startswith("wide.csv: the header row (line 1) has 4 columns, over the 3 limit")
    narrow = write_csv(tmp_path / "narrow.csv", ["Name", "Phone", "City"], [["Ann", PHONES[0], "X"]])
    assert cli_import(capsys, narrow, "ws-a", url)[1]["imported"] == 1


def test_field_cap_from_env_fails_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(MAX_FIELD_CHARS_ENV, "20")
    source = write_csv(tmp_path / "long.csv", ["Name", "Phone"], [["A" * 21, PHONES[0]], ["B" * 20, PHONES[1]]])
    code, result = cli_import(capsys, source, "ws-a", f"sqlite:///{tmp_path / 'c.db'}")
    assert code == 0
    assert (result["imported"], result["failed_by_reason"]) == (1, {"field_too_long": 1})
    assert result["errors"] == [
        {"row": 2, "reason": "field_too_long", "detail": "field 1 has 21 characters, over the 20 limit"}
    ]


# --- personal data in messages and run tags -----------------------------------------------------


def phone_forms(raw: str) -> list[str]:
    """The ways a phone can show up in text: as written, as E.164, as bare digits."""
    digits = re.sub(r"\D", "", raw)
    return [raw, "+1" + digits[-10:], digits[-10:], digits[-7:]]


def run_tags(run_id: str) -> dict[str, str]:
    run = local_instance().get_run_by_id(run_id)
    assert run is not None
    return dict(run.tags)


def test_file_error_message_and_tags_hold_no_phone_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file broken on line 5 fails with a message naming the line, not the rows' contents."""
    data = "Name,Phone\nJosé,{}\nZoë,{}\nÅsa,{}\n".format(*PHONES[:3]).encode() + b"Bj\xffrn,(202) 555-0399\n"
    (tmp_path / "broken.csv").write_bytes(data)
    code, result = cli_import(capsys, tmp_path / "broken.csv", "ws-a", f"sqlite:///{tmp_path / 'c.db'}")
    assert code == 2
    assert result["error"].startswith("broken.csv: invalid utf-8 bytes at byte offset ")
    tags = run_tags(result["run_id"])
    assert tags[TAG_PREFIX + "status"] == "failed"
    assert tags[TAG_PREFIX + "error"] == result["error"]
    texts = [result["error"], *tags.values()]
    leaked = [
        form for raw in [*PHONES[:3], "(202) 555-0399"] for form in phone_forms(raw) if any(form in t for t in texts)
    ]
    assert leaked == []


def test_header_error_names_only_the_header_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file without a header: the message lists its first line (taken as the header), never later rows."""
    source = write_csv(
        tmp_path / "nohead.csv", ["Ann", "Lee", PHONES[0]], [["Bob", "Ray", PHONES[1]], ["Cy", "Fox", PHONES[2]]]
    )
    code, result = cli_import(capsys, source, "ws-a", f"sqlite:///{tmp_path / 'c.db'}")
    assert code == 2
    assert result["error"].startswith("nohead.csv: no phone column found; headers were: 'Ann', 'Lee', '(202) 555-0301'")
    texts = [result["error"], *run_tags(result["run_id"]).values()]
    assert [f for raw in PHONES[1:3] for f in phone_forms(raw) if any(f in t for t in texts)] == []


def test_progress_tags_hold_no_phone_numbers_of_imported_or_skipped_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run tags (progress, first errors) never carry the phones of rows that were imported or skipped."""
    source = write_csv(
        tmp_path / "mixed.csv",
        ["Name", "Phone"],
        [
            ["Ann", PHONES[0]],
            ["Bob", PHONES[1]],
            ["Bob again", PHONES[1]],
            ["Cy", ""],
            ["Di", "555-01"],
        ],
    )
    code, result = cli_import(capsys, source, "ws-a", f"sqlite:///{tmp_path / 'c.db'}")
    assert code == 0
    assert (result["imported"], result["skipped"], result["failed"]) == (2, 1, 2)
    tags = run_tags(result["run_id"])
    assert [(e["row"], e["reason"]) for e in json.loads(tags[TAG_PREFIX + "errors"])] == [
        (5, "missing_phone"),
        (6, "invalid_phone"),
    ]
    assert [f for raw in PHONES[:2] for f in phone_forms(raw) if any(f in t for t in tags.values())] == []
