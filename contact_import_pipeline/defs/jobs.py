"""The import jobs: the four assets over a run's files, with at most 5 insert batches at once."""

from __future__ import annotations

import importlib.util
from typing import Any

import dagster as dg

from contact_import_pipeline.defs.assets import GROUP, INSERT_STEP_TAG
from contact_import_pipeline.settings import DEFAULT_CELERY_BROKER_URL, MAX_CONCURRENT_BATCHES
from contact_import_pipeline.vocabulary import IMPORT_JOB_CELERY_NAME, IMPORT_JOB_NAME, RETRY_STRATEGY_TAG

# Modules the forkserver imports once, so each step process starts with pandas, pyarrow, SQLAlchemy,
# phonenumbers and the assets already loaded. Dagster would otherwise preload only the module that
# holds the job's reconstructor (``bench.pipeline`` or a test module imports none of these).
# ``definitions`` is left out: it reads the bucket settings from the environment when imported.
FORKSERVER_PRELOAD = ("contact_import_pipeline.defs.jobs", "contact_import_pipeline.defs.resources")

# A run of a file of at least CONTACT_STEP_PROCESSES_BYTES runs a process per step: forkserver
# starts a step in ~0.5 s instead of ~1.1 s with spawn, and the tag limit keeps at most 5 insert
# batches of the run in flight (the contacts_db pool limits writers across runs). Every other run
# executes all its steps in the run's own process, one start-up for all of them (settings.py).
_MULTIPROCESS = {
    "max_concurrent": MAX_CONCURRENT_BATCHES,
    "start_method": {"forkserver": {"preload_modules": list(FORKSERVER_PRELOAD)}},
    "tag_concurrency_limits": [
        {"key": key, "value": value, "limit": MAX_CONCURRENT_BATCHES} for key, value in INSERT_STEP_TAG.items()
    ],
}


def _executor_config(config: dict[str, Any]) -> dict[str, Any]:
    return {"in_process": {}} if config["in_process"] else {"multiprocess": _MULTIPROCESS}


import_executor = dg.multi_or_in_process_executor.configured(
    _executor_config,
    name="import_executor",
    config_schema={
        "in_process": dg.Field(
            bool,
            default_value=False,
            description="Run every step in the run's own process (one start-up for the whole run; what the sensor, "
            "trigger and CLI choose below CONTACT_STEP_PROCESSES_BYTES). "
            "Default: a process per step, 5 insert batches at once (a file above it).",
        )
    },
)

# Every run retries automatically after a failure (dagster.yaml run_retries), re-executing all
# steps: batches that landed are recorded and return their outcome, so nothing is applied twice,
# while from-failure re-execution can skip batches that never started.
RUN_TAGS = {RETRY_STRATEGY_TAG: "ALL_STEPS"}

import_job = dg.define_asset_job(
    IMPORT_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=import_executor,
    tags=RUN_TAGS,
    description="Import the contact CSV files listed in ops.raw_csv.config.files into the contacts table.",
)


def celery_job() -> dg.UnresolvedAssetJobDefinition | None:
    """The same assets with every step a Celery task, when ``dagster-celery`` is installed (extra ``celery``).

    Insert batches then run on whichever workers (`celery -A dagster_celery.app worker`) listen on
    the broker, on any machine that shares the Dagster instance storage (PostgreSQL), the contacts
    database and the S3 bucket. Start workers with ``--prefetch-multiplier 1`` so a worker takes
    the next batch only when it is free.
    """
    if importlib.util.find_spec("dagster_celery") is None:
        return None
    from dagster_celery import celery_executor

    return dg.define_asset_job(
        IMPORT_JOB_CELERY_NAME,
        selection=dg.AssetSelection.groups(GROUP),
        executor_def=celery_executor.configured(
            {"broker": DEFAULT_CELERY_BROKER_URL, "backend": DEFAULT_CELERY_BROKER_URL}
        ),
        tags=RUN_TAGS,
        description="import_job with every step executed by Celery workers (see README: Scale-out).",
    )
