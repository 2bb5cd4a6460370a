"""Persistence: the RDB codec (``rdb``) and, later, SAVE/BGSAVE/loading built on it."""
