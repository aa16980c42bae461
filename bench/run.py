"""Run the benchmark lines, each in a fresh process, and write ``bench/results/latest.md``.

    python -m bench.run [--sizes 5k,100k,1m] [--repeats 3]
                        [--only copy,reference,to_sql,cli,launched,step_processes,emoji,noop,workspace1m[,many_files]]
                        [--files 1000 --rows 300 --workspaces 50 --interval 5]

Repeats are interleaved (copy, reference, ..., then the next repeat) so that a noisy moment on a
shared machine hits every line of a size alike; every figure is reported as a ratio to the COPY
floor measured in the same run. Pipeline lines that do not exist yet are listed as such.

``many_files`` (bench.many_files) runs only when named in --only: it is measured once, after the
other lines, with its own baseline (the reference script per file) and its own section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import many_files, pipeline
from bench.common import ADMIN_CONNINFO, REPO_DIR, RESULTS_DIR, SIZES, ensure_data, ensure_emoji_data

BASELINE_LINES = ("copy", "reference", "to_sql")
PIPELINE_LINES = ("cli", "launched", "step_processes")
ALL_LINES = (*BASELINE_LINES, *PIPELINE_LINES, "emoji", "noop", "workspace1m")
# Lines run only when asked for by name (long, and measured once).
OPTIONAL_LINES = ("many_files",)
NOOP_LABEL = "5k"
WORKSPACE_LABEL = "10k"
BIG_LABEL = "1m"
TARGET_LABELS = ("100k", "1m")

WHAT = {
    "copy": "(a) COPY floor: pre-normalized, pre-deduplicated rows into indexed contacts (psycopg copy)",
    "reference": "(b) reference algorithm: phone set, phonenumbers uncached, 50-row INSERTs x 5 threads",
    "to_sql": "(c) pandas read_csv + phonenumbers + drop_duplicates + to_sql(method=None, chunksize=5000)",
    "cli": "pipeline: `contact-import import … --json`, whole process",
    "launched": "pipeline: launched run in the sensor's shape for the file (execute_job seconds)",
    "step_processes": "pipeline: launched run with a process per step, 5 batches at once (the shape above CONTACT_STEP_PROCESSES_BYTES)",
    "emoji": "pipeline: launched run of the 1M file with an emoji ending every first name (memory worst case)",
    "noop": "6 no-op steps (one-batch import shape) under the same executor",
    "workspace1m-empty": "CLI import of 10k rows into an empty workspace `big`",
    "workspace1m-big": "CLI import of the same 10k rows into workspace `big` holding 1M contacts",
}


@dataclass
class Line:
    """One benchmark line at one size: the command that measures it and what it returned."""

    name: str
    label: str
    command: list[str]
    raw_rows: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        return [r["seconds"] for r in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", name, *args]


def run_child(command: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process; return the JSON object it printed last."""
    done = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"exit {done.returncode}: {tail[0][:300]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare(label: str) -> dict[str, int]:
    """Generate the input if missing and cache its normalized, deduplicated twin (not timed)."""
    path = ensure_data(label)
    return run_child(_module("bench.baselines", "prepare", str(path)))


def plan_lines(label: str, only: list[str], unavailable: dict[str, str]) -> list[Line]:
    """The lines measured at one size, in the order they are interleaved."""
    path = str(ensure_data(label))
    lines = []
    for name in only:
        if name in BASELINE_LINES:
            lines.append(Line(name, label, _module("bench.baselines", name, path), SIZES[label]))
        elif name in PIPELINE_LINES and name not in unavailable:
            lines.append(Line(name, label, _module("bench.pipeline", name, path), SIZES[label]))
        elif name == "emoji" and label == BIG_LABEL and "launched" not in unavailable:
            lines.append(
                Line("emoji", label, _module("bench.pipeline", "launched", str(ensure_emoji_data())), SIZES[label])
            )
        elif name == "noop" and label == NOOP_LABEL:
            lines.append(Line("noop", label, _module("bench.pipeline", "noop"), SIZES[label]))
    return lines


def workspace_lines() -> list[Line]:
    path = str(ensure_data(WORKSPACE_LABEL))
    args = ("cli", path, "--workspace", pipeline.BIG_WORKSPACE)
    return [
        Line("workspace1m-empty", WORKSPACE_LABEL, _module("bench.pipeline", *args), SIZES[WORKSPACE_LABEL]),
        Line(
            "workspace1m-big",
            WORKSPACE_LABEL,
            _module("bench.pipeline", *args, "--template", pipeline.TEMPLATE_DB),
            SIZES[WORKSPACE_LABEL],
        ),
    ]


def measure(lines: list[Line], repeats: int, on_progress: Any) -> None:
    for repeat in range(repeats):
        for line in lines:
            try:
                line.runs.append({**run_child(line.command), "repeat": repeat})
                detail = f"{line.runs[-1]['seconds']:.2f} s"
            except (RuntimeError, ValueError) as exc:
                line.errors.append(str(exc))
                detail = f"failed: {exc}"
            print(f"[{line.label} {line.name} #{repeat + 1}] {detail}", file=sys.stderr, flush=True)
        on_progress()


def _fmt_s(value: float) -> str:
    return f"{value:.2f}"


def _shares(line: Line) -> str:
    """Median seconds per pipeline stage as a share of the line's median wall time."""
    timings = [r["timings"] for r in line.runs if isinstance(r.get("timings"), dict)]
    if not timings:
        return ""
    stages = sorted({k for t in timings for k in t})
    parts = []
    for stage in stages:
        values = [float(t[stage]) for t in timings if isinstance(t.get(stage), (int, float))]
        if values:
            parts.append(f"{stage} {100 * statistics.median(values) / line.median:.0f}%")
    return ", ".join(parts)


def _ratio(a: Line | None, b: Line | None) -> float | None:
    if a is None or b is None or not a.runs or not b.runs:
        return None
    return a.median / b.median


def _paired(a: Line | None, b: Line | None) -> str:
    """Median of per-repeat ratios a/b with their range (pairs measured back to back).

    Runs are matched by repeat number, so a failed run drops its pair instead of shifting others.
    """
    if a is None or b is None:
        return "not measured"
    b_by_repeat = {r["repeat"]: r["seconds"] for r in b.runs}
    pairs = [r["seconds"] / b_by_repeat[r["repeat"]] for r in a.runs if r["repeat"] in b_by_repeat]
    if not pairs:
        return "not measured"
    return f"{statistics.median(pairs):.2f} ({min(pairs):.2f}–{max(pairs):.2f})"


def _environment() -> list[str]:
    load = os.getloadavg()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True
    ).stdout.strip()
    with psycopg.connect(ADMIN_CONNINFO) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
    return [
        f"- commit {commit}, {os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at write time",
        f"- PostgreSQL {version} on 127.0.0.1, shared_buffers {buffers}; Python {sys.version.split()[0]}",
    ]


def _seconds(values: list[float | None] | None) -> str:
    if not values:
        return "not measured"
    return ", ".join(f"{v:.2f}" if v is not None else "not finished" for v in values)


def _yes(flag: bool | None) -> str:
    return {True: "yes", False: "no", None: "—"}[flag]


def many_files_section(many: dict[str, Any] | str) -> list[str]:
    """The many_files line: its figures and its targets (``many`` is its JSON, or why it failed)."""
    out = ["", "## Many small files (`many_files`)", ""]
    if isinstance(many, str):
        return [*out, f"failed: {many}"]
    shape, burst, reference = many["shape"], many["burst"], many["reference"]
    latency = burst["latency_s"] or {}
    ledger = burst["ledger"]
    contacts = many["contacts"]
    s3 = many.get("single_s3", {})
    tick = many.get("sensor_tick", {})
    evaluation, daemon_tick = tick.get("evaluation", {}), tick.get("daemon", {})
    triggers = many.get("trigger", [])
    trigger_statuses = f" ({', '.join(t['status'] for t in triggers)})" if triggers else ""
    out += [
        f"{shape['files']:,} files of {shape['rows']} rows over {shape['workspaces']} workspaces, renamed into the "
        f"bucket folder at once; sensor interval {shape['interval_s']} s; the repository's dagster.yaml (PostgreSQL "
        "storage) and one `dagster-daemon`. Measured once; the reference ran in the same run.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| pipeline (sensor + daemon): files/min | {burst['files_per_min']} ({burst['archived']:,} of "
        f"{burst['files']:,} archived, {burst['wall_s']} s from first landing to last archived) |",
        f"| reference algorithm, a process per file: files/min | {reference['files_per_min']} ({reference['wall_s']} s) |",
        f"| pipeline ÷ reference, files/min | {many['pipeline_vs_reference']} |",
        f"| upload → archived s: first / median / p95 / max | "
        f"{' / '.join(str(latency.get(k, '—')) for k in ('first', 'median', 'p95', 'max'))} |",
        f"| runs Dagster created | {burst['runs']} ({', '.join(f'{k} {v}' for k, v in burst['by_status'].items())}); "
        f"files per run {burst['files_per_run']}; median queue {burst['queue_s_median']} s, median run {burst['run_s_median']} s |",
        f"| ledger: every file `completed` exactly once | {_yes(ledger['completed_exactly_once'])} "
        f"({', '.join(f'{k} {v}' for k, v in ledger['by_status'].items())}) |",
        f"| contacts per workspace identical to the reference's | {_yes(contacts['identical'])} "
        f"({contacts['differing_workspaces']} of {shape['workspaces']} workspaces differ; {contacts['pipeline_contacts']:,} "
        f"vs {contacts['reference_contacts']:,} contacts) |",
        f"| one file alone, local folder: landing → archived s | {_seconds(many.get('single_local'))} |",
        f"| one file alone, S3 (moto): upload → archived s | {s3.get('skipped') or _seconds(s3.get('seconds'))} |",
        f"| `trigger` of one local file: launch → run finished s | {_seconds([t['seconds'] for t in triggers])}{trigger_statuses} |",
        f"| new_files_sensor over {many_files.TICK_FILES:,} settled files: one evaluation s (the first, all pending) | "
        f"{evaluation.get('seconds', '—')} ({evaluation.get('pending_s', '—')}); {evaluation.get('runs_requested', '—')} runs requested |",
        f"| the daemon's tick over the same files s (the tick before, all pending) | {daemon_tick.get('tick_s', '—')} "
        f"({daemon_tick.get('pending_tick_s', '—')}); {daemon_tick.get('runs_requested', '—')} runs submitted |",
        "",
        "| target | measured (slowest) | met? |",
        "| --- | ---: | --- |",
    ]
    for target in many["targets"]:
        measured = "not measured" if target["measured"] is None else target["measured"]
        unfinished = f" ({target['unfinished']} not finished)" if target["unfinished"] else ""
        out.append(f"| {target['target']} | {measured}{unfinished} | {_yes(target['met'])} |")
    return out


def report(
    lines: list[Line],
    inputs: dict[str, dict[str, int]],
    unavailable: dict[str, str],
    repeats: int,
    started: str,
    many: dict[str, Any] | str | None = None,
) -> str:
    """The Markdown report: inputs, one row per line, the target ratios, then the many_files line."""
    by_key = {(line.name, line.label): line for line in lines}
    out = [
        "# Benchmark results (latest run)",
        "",
        f"Written by `python -m bench.run` — started {started}, finished "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (f"; median of {repeats} repeats, each in a fresh process." if lines else "."),
        "Machines are shared and noisy: compare ratios to the baselines of the same run, not absolute seconds.",
        "",
        *_environment(),
    ]
    if lines or unavailable:
        out += _lines_and_targets(lines, by_key, inputs, unavailable)
    if many is not None:
        out += many_files_section(many)
    return "\n".join(out) + "\n"


def _lines_and_targets(
    lines: list[Line],
    by_key: dict[tuple[str, str], Line],
    inputs: dict[str, dict[str, int]],
    unavailable: dict[str, str],
) -> list[str]:
    out = [
        "",
        "## Inputs",
        "",
        "| file | raw rows | valid phone | distinct E.164 (= contacts) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, counts in inputs.items():
        out.append(
            f"| contacts_{label}.csv | {counts['raw_rows']:,} | {counts['valid_phone']:,} | {counts['distinct']:,} |"
        )
    out += [
        "",
        "## Lines",
        "",
        "rows/s = raw input rows ÷ median seconds. Peak MB = peak RSS of the measuring process "
        "(pipeline lines: its largest process). × COPY = median ÷ COPY median at the same size.",
        "",
        "| line | size | median s | min–max s | rows/s | peak MB | contacts | × COPY | stage shares | what |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for line in lines:
        if not line.runs:
            out.append(f"| {line.name} | {line.label} | failed | | | | | | | {line.errors[0] if line.errors else ''} |")
            continue
        loads_file = line.name in (*BASELINE_LINES, *PIPELINE_LINES)
        ratio = _ratio(line, by_key.get(("copy", line.label))) if loads_file else None
        rate = f"{line.raw_rows / line.median:,.0f}" if line.name != "noop" else ""
        peak = max(r["peak_rss_mb"] for r in line.runs)
        contacts = {r.get("contacts") for r in line.runs}
        failed = f" ({len(line.errors)} failed)" if line.errors else ""
        out.append(
            f"| {line.name} | {line.label} | {_fmt_s(line.median)}{failed} | "
            f"{_fmt_s(min(line.seconds))}–{_fmt_s(max(line.seconds))} | {rate} | "
            f"{peak:,.0f} | {', '.join(f'{c:,}' for c in sorted(c for c in contacts if c is not None))} | "
            f"{f'{ratio:.2f}' if ratio else ''} | {_shares(line)} | {WHAT[line.name]} |"
        )
    for name, reason in unavailable.items():
        out.append(f"| {name} | — | not available yet | | | | | | | {reason} |")

    out += ["", "## Targets", "", "| target | measured |", "| --- | --- |"]
    for label in SIZES:
        cli, launched, reference = (by_key.get((n, label)) for n in ("cli", "launched", "reference"))
        copy = by_key.get(("copy", label))
        for pipe in (launched, cli):
            # Start-up costs seconds, so the COPY and reference targets only mean something on big files.
            if label == BIG_LABEL and pipe and pipe.runs and copy and copy.runs:
                out.append(
                    f"| {label} {pipe.name} ≤ 3× COPY, then ≤ 2× (paired) | {pipe.name} ÷ COPY = {_paired(pipe, copy)} |"
                )
            if label in TARGET_LABELS and pipe and pipe.runs and reference and reference.runs:
                out.append(
                    f"| {label} {pipe.name} ≥ 2× faster than reference (stretch 3×) (paired) | "
                    f"reference ÷ {pipe.name} = {_paired(reference, pipe)} |"
                )
            if pipe and pipe.runs:
                peak = max(r["peak_rss_mb"] for r in pipe.runs)
                out.append(f"| {label} {pipe.name} largest process ≤ 1 GiB | {peak:,.0f} MB |")
    for label in SIZES:  # where a file becomes big enough for a run of its own (the sensor's threshold)
        launched, steps = by_key.get(("launched", label)), by_key.get(("step_processes", label))
        if launched and steps and launched.runs and steps.runs:
            out.append(
                f"| {label}: the sensor's shape vs a process per step (paired) | "
                f"launched ÷ step_processes = {_paired(launched, steps)} |"
            )
    emoji = by_key.get(("emoji", BIG_LABEL))
    if emoji and emoji.runs:
        peak = max(r["peak_rss_mb"] for r in emoji.runs)
        out.append(f"| {BIG_LABEL} launched, emoji in every name: largest process ≤ 1 GiB | {peak:,.0f} MB |")
    launched5k, noop = by_key.get(("launched", NOOP_LABEL)), by_key.get(("noop", NOOP_LABEL))
    if launched5k or noop:
        out.append(f"| 5k launched ≤ 1.5× no-op job (paired) | launched ÷ noop = {_paired(launched5k, noop)} |")
    big, empty = by_key.get(("workspace1m-big", WORKSPACE_LABEL)), by_key.get(("workspace1m-empty", WORKSPACE_LABEL))
    if big or empty:
        out.append(f"| 10k into 1M workspace ≤ 1.5× empty (paired) | big ÷ empty = {_paired(big, empty)} |")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="5k,100k,1m", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", default=",".join(ALL_LINES), help=f"comma-separated, from {', '.join((*ALL_LINES, *OPTIONAL_LINES))}"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.md")
    group = parser.add_argument_group("many_files line")
    group.add_argument("--files", type=int, default=many_files.DEFAULT_FILES, help="files in the burst")
    group.add_argument("--rows", type=int, default=many_files.DEFAULT_ROWS, help="rows per file")
    group.add_argument("--workspaces", type=int, default=many_files.DEFAULT_WORKSPACES)
    group.add_argument(
        "--interval", type=int, default=many_files.DEFAULT_INTERVAL_SECONDS, help="sensor interval, seconds"
    )
    args = parser.parse_args(argv)
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for value, allowed in ((sizes, SIZES), (only, (*ALL_LINES, *OPTIONAL_LINES))):
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            parser.error(f"unknown {unknown}; choose from {', '.join(allowed)}")

    unavailable: dict[str, str] = {}
    if not pipeline.cli_available():
        for name in ("cli", "workspace1m"):
            if name in only:
                unavailable[name] = "needs the `contact-import` CLI (contact_import_pipeline.app.cli)"
    if "launched" in only and not pipeline.launched_available():
        unavailable["launched"] = "needs contact_import_pipeline.defs.definitions"

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    inputs: dict[str, dict[str, int]] = {}
    lines: list[Line] = []
    many: dict[str, Any] | str | None = None

    def write() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report(lines, inputs, unavailable, args.repeats, started, many))

    groups = list(sizes)
    if "noop" in only and NOOP_LABEL not in groups:
        groups.insert(0, NOOP_LABEL)
    for label in groups:
        group = plan_lines(label, only if label in sizes else ["noop"], unavailable)
        if not group:
            continue
        inputs[label] = prepare(label)
        lines += group
        measure(group, args.repeats, write)

    if "workspace1m" in only and "workspace1m" not in unavailable:
        from bench.baselines import normalized_path

        inputs[BIG_LABEL] = prepare(BIG_LABEL)
        inputs[WORKSPACE_LABEL] = prepare(WORKSPACE_LABEL)
        tic = time.perf_counter()
        pipeline.ensure_template(normalized_path(ensure_data(BIG_LABEL)))
        print(f"[workspace1m] template with 1M contacts ready in {time.perf_counter() - tic:.1f} s", file=sys.stderr)
        group = workspace_lines()
        lines += group
        try:
            measure(group, args.repeats, write)
        finally:
            pipeline.drop_template()

    if "many_files" in only:
        shape = (
            "--files",
            str(args.files),
            "--rows",
            str(args.rows),
            "--workspaces",
            str(args.workspaces),
            "--interval",
            str(args.interval),
        )
        try:
            many = run_child(_module("bench.many_files", *shape))
            detail = f"{many['burst']['files_per_min']} files/min, reference {many['reference']['files_per_min']}"
        except (RuntimeError, ValueError) as exc:
            many = str(exc)
            detail = f"failed: {exc}"
        print(f"[many_files] {detail}", file=sys.stderr, flush=True)

    write()
    print(args.out.read_text())


if __name__ == "__main__":
    main()
