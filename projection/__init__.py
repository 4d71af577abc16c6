"""The read side: projections built from the event log in log order, beside the node, never on
its write path (history indexes now; the warehouse, reports and surveillance later)."""
