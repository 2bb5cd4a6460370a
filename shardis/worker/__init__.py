"""Worker processes: each owns one shard (a keyspace) and executes batches sent by routers."""
