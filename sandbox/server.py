"""Serve the sandbox with waitress, which can also drop a connection without replying."""
from __future__ import annotations

from waitress import create_server
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask

from .errors import DropConnection


class _DroppingTask(WSGITask):
    """A request task that closes the connection, unanswered, when the app raises DropConnection."""

    def service(self):
        try:
            super().service()
        except DropConnection:
            # Nothing was written: closing now looks to the client like a connection reset.
            self.close_on_finish = True


class _DroppingChannel(HTTPChannel):
    task_class = _DroppingTask


def make_server(app, *, host: str, port: int, threads: int) -> BaseWSGIServer:
    """Bind and listen on host:port (0 picks a free port); `server.effective_port` tells which."""
    server = create_server(app, host=host, port=port, threads=threads, ident="sandbox",
                           # Injected latency and slow batches must not look idle.
                           channel_timeout=300)
    server.channel_class = _DroppingChannel
    return server
