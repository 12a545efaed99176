"""uvicorn inside an event loop the caller owns, for ``conveyor admin`` and ``conveyor demo``.

The caller binds the socket (so a busy port is one clear error, and port 0
picks a free one whose number is known before serving) and decides when the
server stops: uvicorn's own signal handlers are left out, so that a Worker in
the same loop keeps its graceful SIGTERM/SIGINT handling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

import uvicorn

from conveyor.core.errors import ConveyorError


class ServeError(ConveyorError):
    """The admin could not be served (port busy, or the app failed to start)."""


class InLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its caller."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port).

    Raises:
        ServeError: the address does not resolve or the port is taken.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on host {host!r}: {exc.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "; pass --port 0 to pick a free one" if port else ""
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port/`` for a bound socket."""
    host, port = sock.getsockname()[:2]
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # listening everywhere
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class AdminServer:
    """One ASGI app served on a bound socket, as a task of the running loop."""

    def __init__(self, app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
        config = uvicorn.Config(
            app,
            log_config=None,  # keep the process's own logging set-up
            log_level=log_level,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,  # live-update streams never end by themselves
        )
        self._server = InLoopServer(config)
        self._sock = sock
        self._task: asyncio.Task[None] | None = None
        self.url = url_of(sock)

    async def _serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._sock])
        except SystemExit:  # uvicorn exits when the app's startup fails; it logged why
            raise ServeError("the admin app failed to start (see the log above)") from None

    async def start(self, timeout: float = 30.0) -> None:
        """Serve in the background; return once requests are answered.

        Raises:
            ServeError: the app failed to start.
        """
        self._task = asyncio.create_task(self._serve(), name="conveyor-admin")
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises why it stopped
                raise ServeError("the admin server stopped while starting")
            if time.monotonic() > deadline:
                raise ServeError(f"the admin app did not start within {timeout:.0f}s")
            await asyncio.sleep(0.02)

    @property
    def task(self) -> asyncio.Task[None]:
        assert self._task is not None, "start() first"
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, close open connections, run the app's shutdown."""
        if self._task is None:
            self._sock.close()
            return
        self._server.should_exit = True
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            logging.getLogger("conveyor.admin").warning("admin server did not stop in time")
            self._server.force_exit = True
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout)
        self._sock.close()
        if self._task.done() and not self._task.cancelled():
            self._task.result()
