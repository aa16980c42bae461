"""What a run of imports is launched with, whoever launches it (sensor, trigger, CLI, tests).

One place builds the run config (the files, in upload order, each with its options; the executor
and where step outputs live) and the run tags, so that every entry point launches the same shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from contact_import_pipeline.keys import UnsafeKeyError, parse_import_key
from contact_import_pipeline.vocabulary import DRY_RUN_TAG, FILES_TAG, ORIGIN_TAG, file_tag, workspace_tag


def run_config(
    files: Sequence[Mapping[str, Any]], *, in_process: bool, batch_size: int | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Run config for ``import_job``: ``files`` are ``FileImport`` fields (key, version, options...).

    A run in one process keeps its step outputs in memory, so nothing of the files is written to disk.
    """
    config: dict[str, Any] = {"files": [{k: v for k, v in f.items() if v not in (None, "", {})} for f in files]}
    if batch_size is not None:
        config["batch_size"] = batch_size
    if dry_run:
        config["dry_run"] = True
    out: dict[str, Any] = {
        "ops": {"raw_csv": {"config": config}},
        "execution": {"config": {"in_process": in_process}},
    }
    if in_process:
        out["resources"] = {"io_manager": {"config": {"in_memory": True}}}
    return out


def run_tags(keys: Sequence[str], origin: str, dry_run: bool = False) -> dict[str, str]:
    """Tags that let the runs list be filtered by workspace and by file, and say who launched it (and
    that it is a dry run, which writes nothing)."""
    tags = {ORIGIN_TAG: str(origin), FILES_TAG: str(len(keys))} | ({DRY_RUN_TAG: "true"} if dry_run else {})
    for key in keys:
        tags[file_tag(key)] = key
        try:
            workspace_id = parse_import_key(key).workspace_id
        except UnsafeKeyError:
            continue
        tags[workspace_tag(workspace_id)] = workspace_id
    return tags


def run_key(files: Sequence[tuple[str, str]]) -> str:
    """The daemon's guard against launching the same set of file versions twice."""
    text = "\n".join(sorted(f"{key}@{version}" for key, version in files))
    return "files-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
