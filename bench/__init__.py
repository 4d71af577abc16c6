"""The standard workload and every benchmark (engine alone, cluster, HTTP API, snapshots)."""
