"""The Raft-replicated node, its store, the admin CLI and the local-cluster launcher."""
