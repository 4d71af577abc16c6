"""The program that wires the packages together: the node process, the CLI, a local cluster."""
