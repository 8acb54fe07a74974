"""Benchmark implementations; run them through tools/bench.py."""
