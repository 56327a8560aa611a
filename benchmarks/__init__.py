"""Benchmarks: measured figures, printed and recorded in docs/benchmarks.md. Never run as tests."""
