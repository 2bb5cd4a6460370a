"""The router: accepts client connections, routes commands to workers and merges replies."""
