"""The run-failure sensor: a failed run ends with status=failed, its reason, its unfinished imports
``interrupted`` in the ledger, and a log line naming them."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.defs import progress
from contact_import_pipeline.importing import stages
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_pipeline.defs.resources import ContactsDatabase
from contact_import_pipeline.app.runner import ImportFailed, ImportRequest, run_import
from contact_import_pipeline.defs.sensors import import_failure_sensor

# Nothing listens on port 1: the contacts database "goes away" outside our own error handling.
UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/contacts"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _failed_run(instance: dg.DagsterInstance, csv: Path, database_url: str) -> str:
    with pytest.raises(ImportFailed) as failed:
        run_import(ImportRequest(source=str(csv), workspace_id="acme"), database_url=database_url, instance=instance)
    return failed.value.run_id


def _evaluate(instance: dg.DagsterInstance, run_id: str, database_url: str) -> list[str]:
    """Run the sensor on the run's failure event like the daemon does; return its log lines."""
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    sensor_context = dg.build_sensor_context(instance=instance, resources={"contacts_db": ContactsDatabase(url=database_url)})
    records = _Records()
    sensor_context.log.addHandler(records)
    context = dg.build_run_status_sensor_context(
        sensor_name=import_failure_sensor.name,
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        context=sensor_context,
    ).for_run_failure()
    import_failure_sensor(context, contacts_db=ContactsDatabase(url=database_url))
    return records.messages


def test_marks_the_unfinished_imports_of_a_crash_our_code_did_not_catch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("name,phone\nAda,+1 202 456 1414\n")
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("planner crashed")

    monkeypatch.setattr(stages, "plan_batches", crash)  # a bug after the import was claimed
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, database_url)
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert (entry.status, entry.error) == ("running", None)

        messages = _evaluate(instance, run_id, database_url)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert after["status"] == "failed"
        assert after["error"] == "step contacts.plan_batches failed: RuntimeError: planner crashed"
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert (entry.status, entry.error) == ("interrupted", after["error"])
        assert messages == [
            f"contact import run {run_id} failed: {after['error']}; interrupted imports: acme/imports/people.csv"
        ]


def test_a_database_outage_is_still_marked_on_the_run(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("name,phone\nAda,+1 202 456 1414\n")
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, UNREACHABLE_DB)
        before = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert before["status"] == "initializing" and "error" not in before

        messages = _evaluate(instance, run_id, UNREACHABLE_DB)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert after["status"] == "failed"
        assert after["error"].startswith("step raw_csv failed: ")
        assert "127.0.0.1" in after["error"] and "port 1" in after["error"]
        (line,) = messages
        assert line.startswith(f"contact import run {run_id} failed: {after['error']}; its imports could not be marked: ")


def test_keeps_the_reason_our_code_already_gave(tmp_path: Path) -> None:
    csv = tmp_path / "no-phone.csv"
    csv.write_text("name,email\nAda,ada@example.com\n")
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, database_url)
        before = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert before["status"] == "failed" and "phone" in before["error"]

        messages = _evaluate(instance, run_id, database_url)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert (after["status"], after["error"]) == ("failed", before["error"])
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert entry.status == "failed" and entry.error in before["error"]  # a file-level failure stays final
        assert messages == [f"contact import run {run_id} failed: {before['error']}; interrupted imports: none unfinished"]


def test_is_on_by_default_and_watches_the_import_job() -> None:
    assert import_failure_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    from contact_import_pipeline.defs.definitions import defs

    assert defs.resolve_sensor_def(import_failure_sensor.name) is not None
