"""Wiring only: assets, job, sensors and resources of the contact import code location."""

import dagster as dg

from contact_import_pipeline import jobs
from contact_import_pipeline.assets import contacts, deduped_contacts, normalized_contacts, raw_csv
from contact_import_pipeline.bucket import bucket_from_env
from contact_import_pipeline.io_managers import ContactImportIOManager
from contact_import_pipeline.resources import ContactsDatabase
from contact_import_pipeline.sensors import import_failure_sensor, new_files_sensor

defs = dg.Definitions(
    assets=[raw_csv, normalized_contacts, deduped_contacts, contacts],
    jobs=[jobs.import_job, jobs.import_job_celery],
    sensors=[new_files_sensor, import_failure_sensor],
    resources={
        "bucket": bucket_from_env(),
        "contacts_db": ContactsDatabase(),
        "io_manager": ContactImportIOManager(),
    },
)


def import_job() -> dg.JobDefinition:
    """The resolved import job, so that multiprocess runs outside a daemon can rebuild it:
    ``dg.execute_job(dg.build_reconstructable_job("contact_import_pipeline.definitions", "import_job"), ...)``.
    """
    return defs.resolve_job_def(jobs.IMPORT_JOB_NAME)


def import_job_celery() -> dg.JobDefinition:
    """The resolved Celery import job, reconstructable the same way (workers rebuild it by name)."""
    return defs.resolve_job_def(jobs.IMPORT_JOB_CELERY_NAME)
