"""Benchmarks: `make bench` (all) or `make bench BENCH=<name>` (one figure)."""
