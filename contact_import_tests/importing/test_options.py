"""importing.options: what each file's options resolve to (run config over upload sidecar over
defaults), and what is refused before anything is read."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from contact_import_pipeline.defs.config import FileImport
from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.importing.options import check_batch_size, resolve_options
from contact_import_pipeline.vocabulary import default_import_tag

KEY = "ws1/imports/file.csv"
STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_default_import_tag_format() -> None:
    moment = datetime(2024, 12, 24, 10, 30, 0, tzinfo=UTC)
    assert default_import_tag(moment) == "import:2024-12-24T10:30:00Z"


def test_options_precedence_run_config_over_upload_over_defaults() -> None:
    upload = {"import_tag": "from-sidecar", "default_region": "gb", "board_phone_number": "020 7946 0958"}
    resolved = resolve_options(FileImport(key=KEY, import_tag="from-config"), upload, STARTED)
    assert (resolved.import_tag, resolved.default_region, resolved.board_phone_number) == (
        "from-config",
        "GB",
        "+442079460958",
    )
    defaults = resolve_options(FileImport(key=KEY), {}, STARTED)
    assert (defaults.workspace_id, defaults.default_region, defaults.on_duplicate, defaults.cleanup) == (
        "ws1",
        "US",
        "skip",
        "archive",
    )
    # The default tag is settled by the ledger, dated by the upload time when known, else the run's start.
    assert (defaults.import_tag, defaults.tag_time, defaults.board_phone_number) == ("", STARTED, None)
    uploaded = resolve_options(FileImport(key=KEY, uploaded_at=1735787045.9), {}, STARTED)
    assert default_import_tag(uploaded.tag_time) == "import:2025-01-02T03:04:05Z"


def test_url_source_without_key_gets_one_in_its_workspace() -> None:
    resolved = resolve_options(
        FileImport(source="https://files.example.com/x/Spring%20Fair.CSV?sig=1", workspace_id="ws1"), {}, STARTED
    )
    assert resolved.key == "ws1/imports/Spring_20Fair.CSV"
    with pytest.raises(OptionsError, match="each file needs a key"):
        resolve_options(FileImport(), {}, STARTED)


@pytest.mark.parametrize(
    "config,upload,message",
    [
        (FileImport(key=KEY, workspace_id="other"), {}, "does not match the file's workspace 'ws1'"),
        (FileImport(key=KEY, board_phone_number="12"), {}, "board_phone_number '12' is not a valid phone number"),
        (FileImport(key=KEY, default_region="XX"), {}, "default_region 'XX' is not a known ISO 3166 region"),
        (FileImport(key=KEY, on_duplicate="merge"), {}, "on_duplicate must be one of"),
        (FileImport(key=KEY, cleanup="shred"), {}, "cleanup must be one of"),
        (FileImport(key=KEY, import_tag="a\nb"), {}, "import_tag contains a control character"),
        (FileImport(key=KEY), {"colour": "red"}, "unknown keys ['colour']"),
        (FileImport(key=KEY), {"column_mapping": {"phone": 3}}, "column_mapping must be an object"),
        (FileImport(key=KEY), {"import_tag": 5}, "option import_tag must be text"),
    ],
)
def test_invalid_options_say_what_is_wrong(config: FileImport, upload: dict, message: str) -> None:
    with pytest.raises(OptionsError) as err:
        resolve_options(config, upload, STARTED)
    assert message in str(err.value)


def test_batch_size_outside_its_range_is_refused() -> None:
    assert check_batch_size(200_000) == 200_000
    with pytest.raises(OptionsError, match="batch_size must be between 1 and 200000, got 0"):
        check_batch_size(0)


def test_key_outside_the_layout_is_refused() -> None:
    with pytest.raises(OptionsError, match=re.escape("cannot import '../imports/x.csv'")):
        resolve_options(FileImport(key="../imports/x.csv"), {}, STARTED)
