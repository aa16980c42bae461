"""The import job: the four assets of one file, with at most 5 insert batches at once."""

import dagster as dg
from dagster_celery import celery_executor

from contact_import_pipeline.assets import GROUP, INSERT_STEP_TAG
from contact_import_pipeline.settings import DEFAULT_CELERY_BROKER_URL, MAX_CONCURRENT_BATCHES

IMPORT_JOB_NAME = "import_job"
IMPORT_JOB_CELERY_NAME = "import_job_celery"

# forkserver starts a step in ~0.5 s instead of ~1.1 s with spawn; the tag limit keeps at most 5
# insert batches of one run in flight (the contacts_db pool limits writers across runs).
# Modules the forkserver imports once, so each step process starts with pandas, pyarrow, SQLAlchemy,
# phonenumbers and the assets already loaded. Dagster would otherwise preload only the module that
# holds the job's reconstructor (``bench.pipeline`` or a test module imports none of these).
# ``definitions`` is left out: it reads the bucket settings from the environment when imported.
FORKSERVER_PRELOAD = ("dagster._core.executor.multiprocess", "contact_import_pipeline.jobs", "contact_import_pipeline.resources")

import_executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": MAX_CONCURRENT_BATCHES,
        "start_method": {"forkserver": {"preload_modules": list(FORKSERVER_PRELOAD)}},
        "tag_concurrency_limits": [
            {"key": key, "value": value, "limit": MAX_CONCURRENT_BATCHES} for key, value in INSERT_STEP_TAG.items()
        ],
    }
)

import_job = dg.define_asset_job(
    IMPORT_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=import_executor,
    description="Import one contact CSV file (one partition of contact_files) into the contacts table.",
)

# Scale-out: the same assets, each step a Celery task, so insert batches run on whichever workers
# (`celery -A dagster_celery.app worker`) listen on the broker, on any machine that shares the
# Dagster instance storage (PostgreSQL) and the contacts database. Start workers with
# `--prefetch-multiplier 1` so a worker takes the next batch only when it is free.
import_job_celery = dg.define_asset_job(
    IMPORT_JOB_CELERY_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=celery_executor.configured(
        {
            "broker": DEFAULT_CELERY_BROKER_URL,
            "backend": DEFAULT_CELERY_BROKER_URL,
        }
    ),
    description="import_job with every step executed by Celery workers (see README: Scale-out).",
)
