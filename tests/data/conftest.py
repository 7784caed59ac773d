"""Fixtures of the data tests: the local HTTP server (127.0.0.1 only) that the download tests fetch from."""
from download_server import http_server  # noqa: F401 (a fixture, found by pytest here)
