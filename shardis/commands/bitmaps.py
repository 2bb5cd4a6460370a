"""Bitmap commands: worker-side operations (being written)."""
