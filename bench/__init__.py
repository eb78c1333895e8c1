"""Benchmarks: speed and statistical behaviour measured, not asserted (run by `make bench`)."""
