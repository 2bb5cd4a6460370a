"""Persistence: the append-only file (aof) and snapshots (rdb), in Redis 7's on-disk formats."""
