"""Benchmarks: scripts that print JSON figures (run them as modules, e.g. `python -m jepa_jax.benchmarks.data`)."""
