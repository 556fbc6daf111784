"""A reference control plane for the agent's control link (issue 12): the ZeroMQ gateway (`gateway.py`),
its SQLite store (`store.py`), the public session API over HTTP (`api.py`) and the CLI (`__main__.py`)."""
