"""Sorted-set commands: worker-side operations (being written)."""
