"""Runnable examples: ``python -m convgrad.examples.<name>``."""
