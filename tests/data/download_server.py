"""A local HTTP server for the download tests: it serves bytes from a dict, counts requests, and can cut a
response short (a Content-Length larger than what it sends, then it closes) or stall. Bound to 127.0.0.1 on a
free port; it runs in a daemon thread and stops when the test ends."""
from __future__ import annotations

import http.server
import io
import tarfile
import threading
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class Route:
    body: bytes
    status: int = 200
    cut_after: int | None = None
    """Send only this many bytes of the body (announcing all of it), then close the connection."""
    stall: float = 0.0
    """Seconds to wait before sending the body."""


@dataclass
class FixtureServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def serve(self, path: str, body: bytes, **options) -> str:
        """Serve ``body`` at ``path``; returns its URL."""
        self.routes[path] = Route(body, **options)
        return self.base + path


def _handler(server: FixtureServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a stuck client cannot hold the server thread for long

        def do_GET(self):  # noqa: N802 (http.server's name)
            server.hits[self.path] = server.hits.get(self.path, 0) + 1
            route = server.routes.get(self.path)
            if route is None or route.status != 200:
                self.send_error(404 if route is None else route.status)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            if route.stall:
                time.sleep(route.stall)
            body = route.body if route.cut_after is None else route.body[: route.cut_after]
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:  # the client gave up (the timeout test)
                pass
            self.close_connection = True

        def log_message(self, *args):  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def http_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), None)
    state = FixtureServer(base=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(state)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=2)


def make_tar(members: dict[str, bytes], *, links: dict[str, tuple[str, bytes]] | None = None) -> bytes:
    """A .tar.gz of files ``{name: bytes}`` and links ``{name: (target, tarfile.SYMTYPE or LNKTYPE)}``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buffer.getvalue()
