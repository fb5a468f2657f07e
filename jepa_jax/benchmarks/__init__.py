"""Benchmarks: the measurements of `jepa-jax bench` (benchmarks.bench), each a library function returning a dict."""
