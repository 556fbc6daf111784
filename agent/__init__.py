"""browser-vm-agent: the per-session browser computer daemon."""

__version__ = "0.1.0"
