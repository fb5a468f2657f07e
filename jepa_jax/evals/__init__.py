"""Evaluations on frozen encoders: probes and reports."""
