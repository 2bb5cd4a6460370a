"""Benchmarks that compare shardis with a real redis-server (see bench/README.md)."""
