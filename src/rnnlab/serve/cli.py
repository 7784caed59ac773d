"""``rnnlab serve BUNDLE [BUNDLE ...] [--host 127.0.0.1] [--port 8000] [--name NAME ...] [--limits.X value]``.

The parser is built here; :mod:`rnnlab.cli` registers it and calls :func:`run`. Bundles are loaded before the
server starts, so a missing or damaged one is one line and exit status 2, and no request can name another path.
"""
from __future__ import annotations

import logging

from jsonargparse import ArgumentParser

from .limits import ServeLimits

log = logging.getLogger(__name__)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        description="Serve bundles over HTTP: a JSON API (/docs lists it), streaming sessions and a web page at /. "
                    "Binds 127.0.0.1 unless --host says otherwise.",
        epilog="Example: rnnlab serve runs/textgen/bundle runs/classify/bundle --port 8000 "
               "--limits.max_new_tokens 500",
        exit_on_error=False)
    p.add_argument("bundles", nargs="+", type=str, help="bundle folders written by 'rnnlab train'")
    p.add_argument("--host", type=str, default="127.0.0.1",
                   help="the address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="the TCP port")
    p.add_argument("--http", type=str, default="auto", choices=["auto", "httptools", "h11"],
                   help="uvicorn's HTTP parser: auto takes httptools where it is installed, else h11 "
                        "(pure Python: about 0.1 ms more CPU per step request on the load benchmark)")
    p.add_argument("--name", nargs="+", type=str, default=None,
                   help="names of the bundles in the URLs, in their order (default: the run folder's name)")
    p.add_class_arguments(ServeLimits, "limits", fail_untyped=True)
    return p


def run(ns) -> int:
    """Load the bundles (errors raise before anything is bound), then serve until interrupted."""
    from .models import load_models, name_bundles

    if not 0 < int(ns.port) < 65536:
        raise ValueError(f"--port must be in 1..65535, got {ns.port}")
    limits = ServeLimits(**dict(ns.limits)) if ns.limits is not None else ServeLimits()
    models = load_models(name_bundles(list(ns.bundles), ns.name))
    import uvicorn

    from .app import create_app

    app = create_app({}, limits, models=models)
    for name, m in models.items():
        log.info("serving %s (%s) from %s", name, m.task, m.path)
    log.info("http://%s:%d/ (API: /docs)", ns.host, ns.port)
    http = getattr(ns, "http", "auto")
    if http == "httptools":
        import importlib.util

        if importlib.util.find_spec("httptools") is None:
            raise ValueError("--http httptools needs the httptools package: pip install httptools "
                             "(or 'rnnlab[serve]'), or pass --http h11")
    uvicorn.run(app, host=ns.host, port=int(ns.port), log_level="warning", http=http)
    return 0
