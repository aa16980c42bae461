"""The pipeline's own benchmark lines, each run in a fresh process by ``bench.run``.

* ``cli``: ``contact-import import <csv> --workspace bench --database-url … --json`` as a whole
  process; wall time of that process, peak RSS of its largest process.
* ``launched``: the import job as a launched run of one file with a process per step, the shape
  the sensor gives a big file (``dagster.execute_job`` on a reconstructable job, run config from
  ``launch.run_config``, a temporary Dagster instance, the file in a temporary bucket folder);
  seconds of ``execute_job``, peak RSS of the largest process, stage timings from the ledger.
* ``noop``: a job of six no-op steps shaped like a one-batch import (raw_csv → normalized →
  deduped → plan → 1 insert → summarize) under the same executor, the floor for ``launched``.
* ``cli`` with ``--template``: the same CLI import into a copy of a database whose workspace
  ``big`` already holds 1M contacts (``workspace1m``).

    python -m bench.pipeline cli bench/data/contacts_5k.csv         # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from bench.common import (
    ADMIN_CONNINFO,
    REPO_DIR,
    WORKSPACE_ID,
    TreeSampler,
    conninfo,
    count_contacts,
    create_schema,
    fresh_database,
    pipeline_module_exists,
    self_peak_rss_mb,
    sqlalchemy_url,
)
from contact_import_tests.helpers import reconstructable_job

if TYPE_CHECKING:
    import dagster as dg

DEFINITIONS_MODULE = "contact_import_pipeline.defs.definitions"
# Environment the pipeline reads (contacts_store.DATABASE_URL_ENV, bucket.BUCKET_DIR_ENV).
DATABASE_URL_ENV = "CONTACTS_DATABASE_URL"
BUCKET_DIR_ENV = "CONTACT_BUCKET_DIR"
MAX_CONCURRENT = 5
# Workspace that holds the preloaded million contacts, and the template database keeping them.
BIG_WORKSPACE = "big"
TEMPLATE_DB = "bench_template_1m"
BIG_WORKSPACE_CONTACTS = 1_000_000


def cli_path() -> Path:
    """The ``contact-import`` script installed beside the running interpreter."""
    return Path(sys.executable).parent / "contact-import"


def cli_available() -> bool:
    return cli_path().exists() and pipeline_module_exists("contact_import_pipeline.app.cli")


def launched_available() -> bool:
    return pipeline_module_exists(DEFINITIONS_MODULE)


def _children_peak_mb() -> float:
    """Largest RSS of any reaped descendant (Linux keeps the max over the whole reaped tree)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _json_tail(text: str) -> dict[str, Any]:
    """The JSON object the CLI printed: the whole output, else its last line that parses."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        for line in reversed(text.strip().splitlines()):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def run_cli(csv_path: Path, dbname: str, workspace_id: str = WORKSPACE_ID) -> dict[str, Any]:
    """Run the CLI import as a whole process; wall seconds and its largest process's peak RSS."""
    command = [
        str(cli_path()),
        "import",
        str(csv_path),
        "--workspace",
        workspace_id,
        "--database-url",
        sqlalchemy_url(dbname),
        "--json",
    ]
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "DAGSTER_HOME": home}
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        with TreeSampler(process.pid) as sampler:
            stdout, stderr = process.communicate()
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"contact-import exited {process.returncode}: {stderr.strip()[-2000:]}")
    summary = _json_tail(stdout)
    return {
        "seconds": seconds,
        "peak_rss_mb": max(_children_peak_mb(), sampler.largest_mb),
        "tree_rss_mb": sampler.total_mb,
        "contacts": count_contacts(dbname, workspace_id),
        "timings": summary.get("timings"),
    }


def ledger_timings(db_url: str, run_id: str) -> dict[str, float] | None:
    """Stage seconds of the run's one import, as its ledger entry recorded them."""
    from contact_import_pipeline.storage.contacts import ContactsStore
    from contact_import_pipeline.storage.ledger import Ledger

    store = ContactsStore(db_url)
    try:
        entries = Ledger(store).entries(root_run_id=run_id)
    finally:
        store.dispose()  # a pooled connection would keep the database from being dropped
    return entries[0].details.get("timings") if entries else None


def _failure_text(event: Any) -> str:
    """The step and the reason it failed: our dg.Failure description, else the error message."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return f"{event.step_key}: {data.user_failure_data.description}"
    return f"{event.step_key}: {data.error.message.strip() if data.error else event.message}"


def _execute(
    job: dg.ReconstructableJob, run_config: dict[str, Any], instance_dir: Path, tags: dict[str, str]
) -> dict[str, Any]:
    """Execute a reconstructable job under a temporary instance and time ``execute_job``."""
    import dagster as dg

    instance_dir.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=str(instance_dir), overrides={"telemetry": {"enabled": False}})
    started = time.perf_counter()
    # Step processes are children of a forkserver that outlives the run, so rusage alone misses them.
    with (
        TreeSampler(os.getpid()) as sampler,
        dg.execute_job(job, instance=instance, run_config=run_config, tags=tags) as result,
    ):
        seconds = time.perf_counter() - started
        if not result.success:
            failures = [_failure_text(e) for e in result.all_events if e.is_step_failure]
            raise RuntimeError(f"{job.get_definition().name} run failed: {failures[:3]}")
        steps = sum(1 for e in result.all_events if e.is_step_success)
        run_id = result.run_id
    return {
        "seconds": seconds,
        "run_id": run_id,
        "steps": steps,
        "peak_rss_mb": max(self_peak_rss_mb(), _children_peak_mb(), sampler.largest_mb),
        "tree_rss_mb": sampler.total_mb,
    }


def run_launched(
    csv_path: Path, db_url: str, workspace_id: str = WORKSPACE_ID, in_process: bool | None = None
) -> dict[str, Any]:
    """Import ``csv_path`` as a launched run of the import job, in the shape the sensor gives it.

    The file is put into a temporary bucket folder under ``<workspace>/imports/`` and launched with
    the run config and tags the sensor gives that file on its own: in one process below
    ``CONTACT_STEP_PROCESSES_BYTES`` (``SensorSettings.in_one_process``), else a process per step;
    step processes inherit the bucket and database settings from the environment.
    ``in_process=False`` forces a process per step: the ``step_processes`` line, which with
    ``launched`` shows where a file is big enough for that.
    """
    if not launched_available():
        raise NotImplementedError("needs contact_import_pipeline.defs.definitions")
    from contact_import_pipeline.defs import launch
    from contact_import_pipeline.settings import SensorSettings
    from contact_import_pipeline.vocabulary import Origin

    if in_process is None:
        in_process = SensorSettings.from_env().in_one_process([csv_path.stat().st_size])
    key = f"{workspace_id}/imports/{csv_path.name}"
    with tempfile.TemporaryDirectory() as tmp:
        bucket = Path(tmp, "bucket")
        (bucket / workspace_id / "imports").mkdir(parents=True)
        shutil.copyfile(csv_path, bucket / key)
        os.environ[BUCKET_DIR_ENV] = str(bucket)
        os.environ[DATABASE_URL_ENV] = db_url
        run_config = launch.run_config([{"key": key}], in_process=in_process)
        job = reconstructable_job()
        outcome = _execute(job, run_config, Path(tmp, "home"), launch.run_tags([key], Origin.SENSOR))
    outcome["timings"] = ledger_timings(db_url, outcome["run_id"])
    return outcome


def _noop_ops() -> Any:
    import dagster as dg

    @dg.op
    def raw_csv() -> int:
        return 0

    @dg.op
    def normalized(raw: int) -> int:
        return raw

    @dg.op
    def deduped(rows: int) -> int:
        return rows

    @dg.op(out=dg.DynamicOut(int))
    def plan(rows: int) -> Any:
        yield dg.DynamicOutput(rows, mapping_key="batch_0")

    @dg.op
    def insert(batch: int) -> int:
        return batch

    @dg.op
    def summarize(results: list[int]) -> int:
        return sum(results)

    return raw_csv, normalized, deduped, plan, insert, summarize


IMPORT_EXECUTOR = "import job's executor, in one process"


def noop_executor() -> tuple[Any, str]:
    """The import job's executor, or (while the pipeline cannot be imported) the one it declares."""
    import dagster as dg

    try:
        from contact_import_pipeline.defs.definitions import import_job

        return import_job().executor_def, IMPORT_EXECUTOR
    except ImportError:
        fallback = dg.multiprocess_executor.configured(
            {"max_concurrent": MAX_CONCURRENT, "start_method": {"forkserver": {}}}
        )
        return fallback, "multiprocess, forkserver, max_concurrent 5 (pipeline not importable)"


def noop_job() -> Any:
    """Six no-op steps shaped like a one-batch import, under the import job's own executor."""
    import dagster as dg

    raw_csv, normalized, deduped, plan, insert, summarize = _noop_ops()

    @dg.job(executor_def=noop_executor()[0])
    def noop_import() -> None:
        summarize(plan(deduped(normalized(raw_csv()))).map(insert).collect())

    return noop_import


def run_noop() -> dict[str, Any]:
    import dagster as dg

    with tempfile.TemporaryDirectory() as tmp:
        job = dg.build_reconstructable_job("bench.pipeline", "noop_job", reconstructor_working_directory=str(REPO_DIR))
        name = noop_executor()[1]
        # The import job's executor as the sensor sets it for a small file: every step in one process.
        config = {"execution": {"config": {"in_process": True}}} if name == IMPORT_EXECUTOR else {}
        outcome = _execute(job, config, Path(tmp, "home"), {})
    outcome["executor"] = name
    return outcome


def ensure_template(normalized_1m: Path) -> str:
    """A template database whose workspace ``big`` holds the 1M normalized contacts (built once)."""
    from bench.baselines import copy_file

    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEMPLATE_DB,)).fetchone():
            return TEMPLATE_DB
        conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    try:
        create_schema(TEMPLATE_DB)
        copy_file(TEMPLATE_DB, normalized_1m, workspace_id=BIG_WORKSPACE)
        with psycopg.connect(conninfo(TEMPLATE_DB), autocommit=True) as conn:
            # Top up to exactly 1M with numbers in the unassigned area code 300, which no import
            # file contains, so the workspace is as big as promised without changing the overlap.
            conn.execute(
                "INSERT INTO contacts (workspace_id, phone_number, firstname, lastname, tags) "
                "SELECT %(ws)s, '+1300' || lpad(g::text, 7, '0'), 'Filler', 'Contact', '[]' "
                "FROM generate_series(1, %(need)s) AS g",
                {"ws": BIG_WORKSPACE, "need": BIG_WORKSPACE_CONTACTS - count_contacts(TEMPLATE_DB, BIG_WORKSPACE)},
            )
            conn.execute("VACUUM ANALYZE contacts")
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
            # Keeps autovacuum and stray sessions out, so copies of it can always be made.
            conn.execute(f"ALTER DATABASE {TEMPLATE_DB} WITH ALLOW_CONNECTIONS false")
    except BaseException:
        drop_template()
        raise
    return TEMPLATE_DB


def drop_template() -> None:
    with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("line", choices=["cli", "launched", "step_processes", "noop"])
    parser.add_argument("csv", type=Path, nargs="?")
    parser.add_argument("--template", help="copy this database instead of starting empty (workspace1m)")
    parser.add_argument("--workspace", default=WORKSPACE_ID)
    args = parser.parse_args(argv)
    if args.line == "noop":
        result = run_noop()
    else:
        with fresh_database(args.template) as db:
            if not args.template:
                create_schema(db)
            if args.line == "cli":
                result = run_cli(args.csv, db, args.workspace)
            else:
                result = run_launched(
                    args.csv,
                    sqlalchemy_url(db),
                    args.workspace,
                    in_process=False if args.line == "step_processes" else None,
                )
                result["contacts"] = count_contacts(db, args.workspace)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
