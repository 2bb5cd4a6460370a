"""Sets commands: worker-side operations (being written)."""
