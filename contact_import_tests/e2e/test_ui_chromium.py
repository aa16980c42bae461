"""The Dagster UI shows an import's progress on the run's page, while it runs and after it ends.

Headless Chromium (Debian's ``chromium`` package) driven by Playwright opens ``/runs/<run_id>``
on a real webserver + daemon; screenshots go to ``test-artifacts/`` at the repo root.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from contact_import_pipeline.app.graphql import DagsterApi
from contact_import_pipeline.app.trigger import trigger_import
from contact_import_pipeline.defs.progress import COUNT_FIELDS
from contact_import_pipeline.settings import STEP_PROCESSES_BYTES_ENV
from contact_import_pipeline.vocabulary import TAG_PREFIX, file_tag, workspace_tag
from contact_import_tests.faults import make_home
from contact_import_tests.helpers import REPO_ROOT, require_service
from contact_import_tests.servers import dagster_servers

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = [pytest.mark.slow, pytest.mark.servers, pytest.mark.xdist_group("ui_chromium")]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
ROWS, BATCH_SIZE = 5000, 250  # 20 insert steps: the run lasts long enough to be seen mid-way
RUN_TIMEOUT_SECONDS = 420.0


def require_chromium() -> None:
    """Fail under CI, skip elsewhere, when Chromium or Playwright is missing."""
    missing = None
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        missing = "Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing:
        require_service(missing)


def tag_values(text: str) -> dict[str, str]:
    """``contact_import/<name>: <value>`` lines as shown in the run's tags dialog, by name."""
    return dict(re.findall(r"^contact_import/([\w.-]+): (.*)$", text, flags=re.MULTILINE))


def show_tags(page: Page, url: str, screenshot: Path) -> dict[str, str]:
    """Open the run page, open "View tags and config", screenshot it and return our tags."""
    page.goto(url)
    view_tags = page.get_by_role("button", name="View tags and config")
    view_tags.wait_for(timeout=60_000)
    skip = page.get_by_role("button", name="Skip")  # the first-visit "Join the community" dialog
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # noqa: BLE001 (playwright's TimeoutError: the dialog did not show this time)
        pass
    view_tags.click()
    dialog = page.get_by_role("dialog").filter(has_text="contact_import/")
    dialog.wait_for(timeout=30_000)
    page.screenshot(path=str(screenshot), full_page=True)
    return tag_values(dialog.inner_text())


def test_run_page_shows_progress_while_running_and_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    home = make_home(tmp_path / "dagster_home")
    env = {
        "CONTACTS_DATABASE_URL": f"sqlite:///{tmp_path / 'contacts.db'}",
        "CONTACT_BUCKET_DIR": str(tmp_path / "bucket"),
    }
    monkeypatch.setenv("CONTACT_BUCKET_DIR", env["CONTACT_BUCKET_DIR"])
    # Only for this caller: the file counts as large, so its run has a process per step and its 20
    # insert steps take long enough to be seen mid-way (a one-process run of 5,000 rows is over at once).
    monkeypatch.setenv(STEP_PROCESSES_BYTES_ENV, "1")
    lines = ["name,phone"] + [f"P{i},+1 (201) {300 + i // 10000:03d}-{i % 10000:04d}" for i in range(ROWS)]
    (tmp_path / "ui.csv").write_text("\n".join(lines) + "\n")
    ARTIFACTS.mkdir(exist_ok=True)

    with dagster_servers(home, env, tmp_path / "logs") as servers:
        api = DagsterApi(servers.url)
        run = trigger_import([str(tmp_path / "ui.csv")], "ui", batch_size=BATCH_SIZE, dagster_url=servers.url)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while api.read_run(run.run_id).progress.get("current_batch", 0) < 1:
            assert time.monotonic() < deadline, "the run never started inserting"
            time.sleep(0.3)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                during = show_tags(page, run.run_url, ARTIFACTS / "ui-run-in-progress.png")
                while not api.read_run(run.run_id).finished:
                    assert time.monotonic() < deadline, "the run did not finish"
                    time.sleep(1)
                after = show_tags(page, run.run_url, ARTIFACTS / "ui-run-finished.png")
            finally:
                browser.close()
        final = api.read_run(run.run_id)

    print(f"\nUI mid-run: {during}\nUI after: {after}")
    assert final.status == "SUCCESS"
    assert during["status"] == "processing", during
    assert 0 < int(during["imported"]) < ROWS and 0 < int(during["processed"]) < ROWS
    assert 1 <= int(during["current_batch"]) < int(during["total_batches"]) == ROWS // BATCH_SIZE
    assert {name: after[name] for name in ("status", *COUNT_FIELDS)} == {
        "status": "completed",
        "total": str(ROWS),
        "processed": str(ROWS),
        "imported": str(ROWS),
        "updated": "0",
        "skipped": "0",
        "failed": "0",
        "current_batch": "20",
        "total_batches": "20",
    }
    assert {name: after[name] for name in COUNT_FIELDS} == {name: str(final.progress[name]) for name in COUNT_FIELDS}
    # The page also names the run's file and workspace: the tags the runs list filters by.
    key = "ui/imports/ui.csv"
    identity = [tag.removeprefix(TAG_PREFIX) for tag in (file_tag(key), workspace_tag("ui"))]
    assert [after.get(name) for name in identity] == [key, "ui"]
