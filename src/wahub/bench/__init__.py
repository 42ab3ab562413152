"""Benchmarks: each compares wahub with a baseline measured in the same run."""
