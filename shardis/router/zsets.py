"""Sorted-set commands that span workers (being written)."""
