"""Step outputs that belong to their run: stored under its id, deleted when it succeeds.

The stage values hold whole files (personal data), so they are not kept: an unpartitioned asset's
output would otherwise sit at one path per asset, shared and overwritten by concurrent runs, and
stay there forever. Here every output lives under ``<run id>/<step key>/<output>``; a re-executed
step reads its inputs from the run that produced them.

Where they go (``storage.outputs``):

* a run in one process (the small-file runs the sensor packs, ``contact-import import`` of a small
  file) keeps them in memory: nothing is written at all;
* otherwise, with an S3 bucket, under ``_contact_import_outputs/`` in that bucket, so Celery
  workers on other machines share them;
* otherwise under ``<DAGSTER_HOME>/storage/contact_import_outputs``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from contact_import_pipeline.defs.assets import OUTPUT_READERS
from contact_import_pipeline.defs.resources import BucketResource
from contact_import_pipeline.storage.bucket import ContactBucket, S3Bucket
from contact_import_pipeline.storage.outputs import (
    LOCAL_OUTPUTS_FOLDER,
    BucketOutputs,
    LocalOutputs,
    MemoryOutputs,
    OutputMissing,
    OutputStore,
)


def output_store(instance: dg.DagsterInstance, bucket: ContactBucket) -> OutputStore:
    """The shared store for this instance and bucket: S3 when the bucket is S3, else the instance's folder."""
    if isinstance(bucket, S3Bucket):
        return BucketOutputs(bucket)
    return LocalOutputs(Path(instance.storage_directory()) / LOCAL_OUTPUTS_FOLDER)


def _output_path(context: dg.OutputContext) -> str:
    """``<run id>/<step key>/<output>[/<mapping key>]``: a dynamic output has one per mapping key."""
    path = f"{context.run_id}/{context.step_key}/{context.name}"
    return f"{path}/{context.mapping_key}" if context.mapping_key else path


class _RunScopedIOManager(dg.IOManager):
    def __init__(self, store: OutputStore) -> None:
        self.store = store

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if isinstance(self.store, MemoryOutputs):
            self.store.step_finished()  # the step is done with its inputs
        self.store.write(_output_path(context), obj)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        if upstream is None:
            raise dg.Failure(description=f"input {context.name} has no upstream output to load")
        try:
            return self.store.read(_output_path(upstream))
        except OutputMissing as exc:
            raise dg.Failure(description=str(exc.args[0])) from exc


def _readers(path: str) -> int:
    """How many steps read the output at ``path`` (``<run>/<step>/<output>...``)."""
    return OUTPUT_READERS.get(path.split("/")[1], 1)


class ContactImportIOManager(dg.ConfigurableIOManagerFactory):
    """Step outputs under the run's id: in memory for one-process runs, else on disk or in S3."""

    bucket: BucketResource
    in_memory: bool = Field(
        default=False,
        description="Keep step outputs in the run's process instead of storing them. Only for runs whose steps "
        "all execute in one process (execution config in_process: true); the sensor sets it for its packed runs.",
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        if self.in_memory:
            return _RunScopedIOManager(MemoryOutputs(_readers))
        instance = context.instance or dg.DagsterInstance.get()
        return _RunScopedIOManager(output_store(instance, self.bucket.open()))


def expired_output_runs(
    instance: dg.DagsterInstance, stored: dict[str, float], retention_seconds: float, now: float | None = None
) -> list[str]:
    """Runs whose outputs may go: their run family succeeded, the run is gone, or it ended
    (or was last written) longer than ``retention_seconds`` ago."""
    if not stored:
        return []
    now = time.time() if now is None else now
    records = {r.dagster_run.run_id: r for r in instance.get_run_records(filters=dg.RunsFilter(run_ids=list(stored)))}
    roots = {r.dagster_run.root_run_id or run_id for run_id, r in records.items()}
    succeeded_roots = {
        r.dagster_run.root_run_id or r.dagster_run.run_id
        for r in instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS], run_ids=list(roots))
        )
    }
    for root in roots:
        children = instance.get_run_records(
            filters=dg.RunsFilter(tags={"dagster/root_run_id": root}, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=1
        )
        if children:
            succeeded_roots.add(root)
    expired = []
    for run_id, written in stored.items():
        record = records.get(run_id)
        if record is None:
            if now - written > 3600:  # a run being created has no record for a moment
                expired.append(run_id)
            continue
        root = record.dagster_run.root_run_id or run_id
        ended = record.end_time or written
        if root in succeeded_roots or (record.dagster_run.is_finished and now - ended > retention_seconds):
            expired.append(run_id)
    return expired


def remove_run_outputs(instance: dg.DagsterInstance, bucket: ContactBucket, run_ids: Iterable[str]) -> None:
    """Delete the outputs of these runs now (the CLI does so for its own successful runs)."""
    output_store(instance, bucket).delete_runs(run_ids)
