"""The Raft-replicated node, its store, and the launcher of local clusters."""
