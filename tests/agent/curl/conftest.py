"""The /curl tests use the session-wide `echo_server` fixture (tests/conftest.py)."""
