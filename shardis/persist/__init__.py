"""Persistence in Redis 7.0's own file formats: the RDB codec (``rdb``, with ``packs`` for the
compact encodings) and the multi-part append-only file (``aof``); SAVE/BGSAVE, loading and the
workers' AOF are built on them."""
