"""The HTTP and WebSocket gateway that runs inside every node."""
