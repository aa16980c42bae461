"""Scale-out: a 100k-row import whose steps run on two Celery worker processes (dagster-celery + Redis).

Both workers and the run share the production instance configuration (dagster.yaml on a fresh
PostgreSQL database), the contacts database and an S3 bucket (moto's server), exactly as separate
machines would. Each has a DAGSTER_HOME of its own, and no step output may land in any of them:
outputs travel through S3 only.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.progress import read_progress
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_pipeline.storage.outputs import BUCKET_OUTPUTS_PREFIX
from contact_import_pipeline.vocabulary import IMPORT_JOB_CELERY_NAME, Origin
from contact_import_tests.helpers import (
    dagster_pg_env,
    insert_rows,
    numbered_rows,
    phone_of,
    reconstructable_job,
    require_service,
    start_group,
    stop_groups,
    write_csv,
)
from contact_import_tests.s3_server import new_s3_bucket, s3_bucket_env
from contact_import_tests.servers import production_home, run_outputs_folder

BIN = Path(sys.executable).parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ROWS = 100_000
BATCHES = 10
# Where each step of the run keeps its output, under the run's folder of step outputs: one batch per
# mapping key of plan_batches, and one result per insert step.
BATCH_KEYS = [f"batch_{i:05d}" for i in range(BATCHES)]
STEP_OUTPUTS = sorted(
    ["raw_csv/result", "normalized_contacts/result", "deduped_contacts/result", "contacts.summarize/result"]
    + [f"contacts.plan_batches/result/{key}" for key in BATCH_KEYS]
    + [f"contacts.insert_batch[{key}]/result" for key in BATCH_KEYS]
)
READY_TIMEOUT_SECONDS = 180.0


def require_redis() -> None:
    """Fail under CI, skip elsewhere, when Redis is not answering."""
    import redis

    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        require_service(
            f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT} ({exc}). Start it: redis-server --daemonize yes"
        )


def free_redis_db() -> int:
    """An empty Redis database number (1-15), so concurrent test runs never share a task queue."""
    import redis

    empty = [n for n in range(1, 16) if redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=n).dbsize() == 0]
    if not empty:
        pytest.fail("no empty Redis database among 1-15 for the Celery test")
    return random.choice(empty)


@pytest.fixture
def celery_broker() -> Iterator[str]:
    """A Redis database of its own for broker and results, emptied afterwards so that later runs
    on this machine find it free again."""
    import redis

    require_redis()
    db = free_redis_db()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db).flushdb()


def big_file(path: Path) -> Path:
    """100k rows: every 50th (from row 7) an invalid phone, every 100th (from row 13) repeats the previous phone."""
    rows = numbered_rows(ROWS)
    for i in range(ROWS):
        if i % 50 == 7:
            rows[i][3] = "12345"
        elif i % 100 == 13:
            rows[i][3] = rows[i - 1][3]
    random.Random(7).shuffle(rows)
    return write_csv(path, ["First Name", "Last Name", "Email", "Mobile Phone"], rows)


@pytest.mark.slow
@pytest.mark.servers
@pytest.mark.xdist_group("celery")
def test_celery_workers_import_100k_rows_through_s3(
    tmp_path: Path,
    pg_url: str,
    instance_db: str,
    celery_broker: str,
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = new_s3_bucket(s3_endpoint)
    env = {
        "CONTACTS_DATABASE_URL": pg_url,
        "CELERY_BROKER_URL": celery_broker,
        "CELERY_RESULT_BACKEND": celery_broker,
        **s3_bucket_env(bucket),
        **dagster_pg_env(instance_db),
    }
    # The run's own process and each worker: one dagster.yaml (the same PostgreSQL storage), three homes.
    homes = {name: production_home(tmp_path / name) for name in ("launcher", "worker1", "worker2")}
    for name, value in {**env, "DAGSTER_HOME": str(homes["launcher"])}.items():
        monkeypatch.setenv(name, value)

    key = "ws1/imports/big.csv"
    bucket.upload_file(key, big_file(tmp_path / "big.csv"))
    (uploaded,) = bucket.list_objects(key)
    store = ContactsStore(pg_url)
    store.create_schema()
    # 1,000 contacts exist before: 970 of them are valid, first-in-file rows of the upload.
    pre = [(f"Old{i}", "", "", "", "", "", "", "", "", "", "", phone_of(i)) for i in range(1000)]
    assert insert_rows(store, pre, workspace_id="ws1", lines=list(range(1000))).imported == 1000

    run_tag = uuid.uuid4().hex[:8]
    workers: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    try:
        for index in (1, 2):
            name = f"w{index}-{run_tag}@localhost"
            logs[name] = tmp_path / f"worker{index}.log"
            workers[name] = start_group(
                [
                    str(BIN / "celery"),
                    "-A",
                    "dagster_celery.app",
                    "worker",
                    "-P",
                    "solo",
                    "--prefetch-multiplier",
                    "1",
                    "-n",
                    name,
                    "-Q",
                    "dagster",
                    "--loglevel",
                    "INFO",
                ],
                env={**os.environ, **env, "DAGSTER_HOME": str(homes[f"worker{index}"]), "PYTHONUNBUFFERED": "1"},
                log=logs[name],
                cwd=tmp_path,
            )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not all("ready." in path.read_text(errors="replace") for path in logs.values()):
            dead = [n for n, p in workers.items() if p.poll() is not None]
            assert not dead and time.monotonic() < deadline, "\n".join(p.read_text()[-3000:] for p in logs.values())
            time.sleep(0.5)

        instance = dg.DagsterInstance.get()
        files = [
            {"key": key, "version": uploaded.version, "uploaded_at": uploaded.last_modified, "import_tag": "celery"}
        ]
        # The Celery job's executor is configured in code: no execution config.
        run_config = {
            k: v for k, v in launch.run_config(files, in_process=False, batch_size=10_000).items() if k != "execution"
        }
        started = time.perf_counter()
        with dg.execute_job(
            reconstructable_job(IMPORT_JOB_CELERY_NAME),
            instance=instance,
            run_config=run_config,
            tags=launch.run_tags([key], Origin.CLI),
        ) as result:
            seconds = time.perf_counter() - started
            assert result.success, "\n".join(p.read_text()[-3000:] for p in logs.values())
            (materialization,) = [
                e.materialization
                for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey("contacts")
            ]
        print(f"celery import of {ROWS} rows on 2 workers: {seconds:.1f}s")

        counts = {"total": 100_000, "imported": 96_030, "updated": 0, "skipped": 1_970, "failed": 2_000}
        meta = {k: v.value for k, v in materialization.metadata.items()}
        assert {
            k: meta[k] for k in (*counts, "processed", "batches", "imports", "completed_imports", "failed_imports")
        } == {
            **counts,
            "processed": 100_000,
            "batches": BATCHES,
            "imports": 1,
            "completed_imports": 1,
            "failed_imports": 0,
        }
        assert meta["skipped_by_reason"] == {"duplicate_existing": 970, "duplicate_in_file": 1_000}
        assert meta["failed_by_reason"] == {"invalid_phone": 2_000}
        assert read_progress(instance.get_run_by_id(result.run_id).tags)["status"] == "completed"
        assert store.count_contacts("ws1") == 1_000 + 96_030
        (entry,) = Ledger(store).entries(root_run_id=result.run_id)
        assert (entry.file, entry.import_tag, entry.status) == (key, "celery", "completed")
        assert {k: getattr(entry, k) for k in counts} == counts

        # Every step ran in a Celery worker, and both workers took part.
        by_worker: dict[str, list[str]] = {}
        for record in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            metadata = record.dagster_event.engine_event_data.metadata
            if "Celery worker" in metadata:
                by_worker.setdefault(metadata["Celery worker"].value, []).append(record.step_key)
        print({name: len(keys) for name, keys in by_worker.items()})
        assert set(by_worker) == set(workers), by_worker
        steps = sorted(step for keys in by_worker.values() for step in keys)
        assert len(steps) == 3 + 1 + BATCHES + 1  # three assets, plan_batches, 10 insert batches, summarize

        # Steps handed their outputs over through the bucket (no daemon runs here to sweep them), and
        # nothing of them was written under any DAGSTER_HOME: a Celery step opens the instance from the
        # run's instance ref, so the launcher's storage folder is the one a local output would go to.
        prefix = f"{BUCKET_OUTPUTS_PREFIX}{result.run_id}/"
        assert sorted(obj.key[len(prefix) :] for obj in bucket.list_objects(prefix)) == STEP_OUTPUTS
        assert [home for home in homes.values() if run_outputs_folder(home, result.run_id).exists()] == []
        instance.dispose()
    finally:
        stop_groups(list(workers.values()))
        store.dispose()
