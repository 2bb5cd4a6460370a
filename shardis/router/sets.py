"""Sets commands that span workers (being written)."""
