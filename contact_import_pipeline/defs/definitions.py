"""Wiring only: assets, jobs, sensors and resources of the contact import code location."""

import dagster as dg

from contact_import_pipeline.defs import jobs
from contact_import_pipeline.defs.assets import contacts, deduped_contacts, normalized_contacts, raw_csv
from contact_import_pipeline.defs.io_manager import ContactImportIOManager
from contact_import_pipeline.defs.resources import BucketResource, ContactsDatabase
from contact_import_pipeline.defs.sensors import import_failure_sensor, new_files_sensor, step_outputs_sweep
from contact_import_pipeline.vocabulary import IMPORT_JOB_CELERY_NAME, IMPORT_JOB_NAME

_bucket = BucketResource()

defs = dg.Definitions(
    assets=[raw_csv, normalized_contacts, deduped_contacts, contacts],
    jobs=[job for job in (jobs.import_job, jobs.celery_job()) if job is not None],
    sensors=[new_files_sensor, import_failure_sensor, step_outputs_sweep],
    resources={
        "bucket": _bucket,
        "contacts_db": ContactsDatabase(),
        "io_manager": ContactImportIOManager(bucket=_bucket),
    },
)


def import_job() -> dg.JobDefinition:
    """The resolved import job, so that multiprocess runs outside a daemon can rebuild it:
    ``dg.execute_job(dg.build_reconstructable_job("contact_import_pipeline.defs.definitions", "import_job"), ...)``.
    """
    return defs.resolve_job_def(IMPORT_JOB_NAME)


def import_job_celery() -> dg.JobDefinition:
    """The resolved Celery import job, reconstructable the same way (workers rebuild it by name)."""
    return defs.resolve_job_def(IMPORT_JOB_CELERY_NAME)
