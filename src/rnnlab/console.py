"""The one rich Console that rnnlab's progress bar and log lines share (stderr), and the logging handler on it.

No torch here: the CLI sets up logging through :func:`log_handler` before it imports anything heavy.
"""
from __future__ import annotations

import logging
import sys

_console = None


def console():
    """The rich Console (on stderr) that the progress bar and the log lines share."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel where rich can draw a live bar (ipywidgets installed)."""
    try:
        if not console().is_jupyter:
            return False
        import ipywidgets  # noqa: F401  rich draws its live display in Jupyter through it
    except ImportError:
        return False
    return True


def log_handler(*, force_rich: bool = False) -> logging.Handler:
    """A handler that prints log records as plain ``%(message)s`` lines: through rich on :func:`console` (so they
    print above a running bar) on a terminal or in a notebook, or with ``force_rich``; a plain stderr stream
    otherwise (a pipe or a log file gets unwrapped lines), and when rich is not installed."""
    try:
        from rich.logging import RichHandler
    except ImportError:
        return _plain()
    if not (force_rich or sys.stderr.isatty() or in_notebook()):
        return _plain()
    handler = RichHandler(console=console(), show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def _plain() -> logging.Handler:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler
