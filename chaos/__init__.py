"""Fault injection, the recorded client workload and the history checkers."""
