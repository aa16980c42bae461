"""defs.io_manager: step outputs belong to their run: stored under its id, never shared by concurrent runs, kept in
memory for one-process runs, and deleted when the run family succeeds or after the retention time."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.io_manager import expired_output_runs, output_store
from contact_import_pipeline.defs.sensors import step_outputs_sweep
from contact_import_pipeline.storage.bucket import LocalFolderBucket
from contact_import_pipeline.storage.outputs import LOCAL_OUTPUTS_FOLDER
from contact_import_tests.faults import make_home
from contact_import_tests.helpers import (
    NUMBERED_HEADER,
    as_resource,
    csv_bytes,
    numbered_rows,
    reconstructable_job,
    upload,
)

DAY = 24 * 3600.0


def _launch(instance: dg.DagsterInstance, key: str, database_url: str, in_process: bool) -> str:
    """One run of the import job with a process per step (or in one process), from this process."""
    config = launch.run_config([{"key": key, "cleanup": "keep"}], in_process=in_process)
    config.setdefault("resources", {})["contacts_db"] = {"config": {"url": database_url}}
    with dg.execute_job(reconstructable_job(), instance=instance, run_config=config) as result:
        assert result.success
        return result.run_id


@pytest.mark.slow  # two runs with a process per step, and one in process (~10 s)
def test_outputs_live_under_the_run_and_go_when_it_succeeded(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    upload("ws1/imports/a.csv", csv_bytes(NUMBERED_HEADER, numbered_rows(2)))
    with dg.instance_for_test(temp_dir=str(make_home(tmp_path / "home"))) as instance:
        outputs = Path(instance.storage_directory()) / LOCAL_OUTPUTS_FOLDER
        first = _launch(instance, "ws1/imports/a.csv", database_url, in_process=False)
        second = _launch(instance, "ws1/imports/a.csv", database_url, in_process=False)
        # Two runs of the same assets never share a path: each keeps its own outputs.
        for run_id in (first, second):
            stored = sorted(
                p.relative_to(outputs / run_id).as_posix() for p in (outputs / run_id).rglob("*") if p.is_file()
            )
            assert stored == [
                "contacts.insert_batch[batch_00000]/result",
                "contacts.plan_batches/result/batch_00000",
                "contacts.summarize/result",
                "deduped_contacts/result",
                "normalized_contacts/result",
                "raw_csv/result",
            ]
        # A run kept in one process writes nothing.
        in_memory = _launch(instance, "ws1/imports/a.csv", database_url, in_process=True)
        assert not (outputs / in_memory).exists()

        bucket = LocalFolderBucket(root=str(tmp_path / "bucket"))
        store = output_store(instance, bucket)
        assert sorted(store.runs()) == sorted([first, second])
        assert sorted(expired_output_runs(instance, store.runs(), retention_seconds=DAY)) == sorted([first, second])
        context = dg.build_sensor_context(instance=instance, resources={"bucket": as_resource(bucket)})
        assert step_outputs_sweep(context).skip_message == "deleted the step outputs of 2 runs"
        assert store.runs() == {}


def test_a_failed_run_keeps_its_outputs_until_recovered_or_expired(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(make_home(tmp_path / "home"))) as instance:
        failed = instance.create_run_for_job(dg.JobDefinition(graph_def=dg.GraphDefinition(name="g", node_defs=[])))
        instance.report_run_failed(failed)
        store = output_store(instance, LocalFolderBucket(root=str(tmp_path / "bucket")))
        store.write(f"{failed.run_id}/raw_csv/result", {"rows": 1})
        store.write("0" * 36 + "/raw_csv/result", {"rows": 2})  # a run Dagster no longer knows
        written = store.runs()
        now = time.time()
        assert expired_output_runs(instance, written, retention_seconds=DAY, now=now) == []
        assert expired_output_runs(instance, written, retention_seconds=DAY, now=now + 2 * 3600) == ["0" * 36]
        assert sorted(expired_output_runs(instance, written, retention_seconds=DAY, now=now + 2 * DAY)) == sorted(
            [failed.run_id, "0" * 36]
        )
        # A successful re-execution recovers the run: its parent's outputs go at once.
        child = instance.create_run_for_job(
            dg.JobDefinition(graph_def=dg.GraphDefinition(name="g", node_defs=[])),
            parent_run_id=failed.run_id,
            root_run_id=failed.run_id,
            tags={"dagster/root_run_id": failed.run_id, "dagster/parent_run_id": failed.run_id},
        )
        instance.report_run_failed(child)
        assert expired_output_runs(instance, {failed.run_id: now}, retention_seconds=DAY, now=now) == []
        instance.delete_run(child.run_id)
        success = instance.create_run_for_job(
            dg.JobDefinition(graph_def=dg.GraphDefinition(name="g", node_defs=[])),
            parent_run_id=failed.run_id,
            root_run_id=failed.run_id,
            tags={"dagster/root_run_id": failed.run_id, "dagster/parent_run_id": failed.run_id},
            status=dg.DagsterRunStatus.SUCCESS,
        )
        assert success.status == dg.DagsterRunStatus.SUCCESS
        assert expired_output_runs(instance, {failed.run_id: now}, retention_seconds=DAY, now=now) == [failed.run_id]
