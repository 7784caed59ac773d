"""rnnlab.serve: an HTTP API and a web page for trained bundles, with streaming sessions that keep their state.

``create_app(bundles, limits)`` builds the FastAPI app (``rnnlab serve BUNDLE ...`` runs it on uvicorn);
:class:`ServeLimits` holds every limit. FastAPI is an optional install, imported only when the app is built.
"""
from __future__ import annotations

from .limits import ServeLimits

__all__ = ["ServeLimits", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module 'rnnlab.serve' has no attribute {name!r}")
