"""Bitmap commands that span workers (being written)."""
