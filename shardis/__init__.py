"""shardis: a Redis-compatible, multi-process, shared-nothing key-value server."""

__version__ = "0.1.0"

#: The Redis version we report to clients, for compatibility checks in client libraries.
REDIS_VERSION = "7.0.15"
