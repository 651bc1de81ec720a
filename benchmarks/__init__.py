"""Benchmarks: `python -m benchmarks.<name> --help`; each prints a table and, last, one JSON line of figures."""
