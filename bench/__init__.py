"""Benchmark harness: seeded messy contact CSVs, baselines (COPY, reference algorithm, pandas) and
the pipeline's own lines, each measured in a fresh process and reported as ratios to COPY."""
