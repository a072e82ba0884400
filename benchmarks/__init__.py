"""Benchmark runners for recbole_mixrec (``python -m benchmarks.compare``)."""
