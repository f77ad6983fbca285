"""Throughput and quality benchmarks; run as `python -m benchmarks.<name>`."""
