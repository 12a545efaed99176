"""A counting TCP proxy for the PostgreSQL wire protocol (loopback only).

Used by the harness's round-trip census (``--commandstats`` with the postgres backend): the
library connects to the proxy instead of the server, the proxy forwards every byte unchanged
and, on the side, parses the messages of both directions and counts per connection:

- **round trips**: client write bursts that follow a server reply (or open the connection),
  i.e. the times the client had to wait for the server before it could go on;
- **ReadyForQuery** messages (one per Sync or simple Query: a protocol-level exchange);
- **statements**: the server's CommandComplete messages, each classified by the statement's
  text (Parse / simple Query, matched by statement name) with ``sqlcount.classify``;
- **transactions**: ReadyForQuery status changes from in-transaction back to idle (a COMMIT
  or ROLLBACK), plus implicit ones: exchanges that ran a statement outside a transaction
  block (autocommit), counted apart as well.

The client must not use TLS or GSS encryption (``sslmode=disable&gssencmode=disable`` in
the URL): encrypted traffic cannot be parsed. Only the harness's census uses it; the timed
measurements connect to the server directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .sqlcount import classify

LOOPBACK = "127.0.0.1"


@dataclass
class ConnStats:
    """What one proxied connection did."""

    application_name: str = ""
    listener: bool = False  # it sent LISTEN: the library's wake-up connection
    bursts: int = 0
    ready: int = 0
    transactions: int = 0
    implicit: int = 0  # of which autocommit statements (idle before and after)
    statements: Counter[str] = field(default_factory=Counter)
    client_messages: Counter[str] = field(default_factory=Counter)
    notifications: int = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "application_name": self.application_name,
            "listener": self.listener,
            "round_trips": self.bursts,
            "ready_for_query": self.ready,
            "transactions": self.transactions,
            "implicit_transactions": self.implicit,
            "statements": dict(self.statements),
            "client_messages": dict(self.client_messages),
            "notifications": self.notifications,
        }


class _Session:
    """One client connection: parses both directions while bytes are forwarded."""

    def __init__(self, stats: ConnStats) -> None:
        self.stats = stats
        self.cbuf = bytearray()
        self.sbuf = bytearray()
        self.started = False  # the StartupMessage has been seen
        self.last_from_server = True  # so the first client write counts as a burst
        self.named: dict[bytes, str] = {}  # prepared statement name -> text
        self.unnamed = ""
        self.bound: deque[str] = deque()  # Bind seen, Execute not yet
        self.pending: deque[str] = deque()  # executed, CommandComplete not yet
        self.in_tx = False
        self.ran = False  # a statement completed since the last ReadyForQuery

    # client -> server ----------------------------------------------------------------

    def from_client(self, data: bytes) -> None:
        if self.last_from_server:
            self.stats.bursts += 1
            self.last_from_server = False
        self.cbuf += data
        while True:
            if not self.started:
                if len(self.cbuf) < 8:
                    return
                (length,) = struct.unpack("!I", self.cbuf[:4])
                if len(self.cbuf) < length:
                    return
                body = bytes(self.cbuf[4:length])
                del self.cbuf[:length]
                (code,) = struct.unpack("!I", body[:4])
                if code == 196608:  # protocol 3.0 StartupMessage
                    self.started = True
                    parts = body[4:].split(b"\0")
                    for key, value in zip(parts[::2], parts[1::2], strict=False):
                        if key == b"application_name":
                            self.stats.application_name = value.decode(errors="replace")
                continue
            if len(self.cbuf) < 5:
                return
            kind = chr(self.cbuf[0])
            (length,) = struct.unpack("!I", self.cbuf[1:5])
            if len(self.cbuf) < 1 + length:
                return
            body = bytes(self.cbuf[5 : 1 + length])
            del self.cbuf[: 1 + length]
            self._client_message(kind, body)

    def _client_message(self, kind: str, body: bytes) -> None:
        self.stats.client_messages[kind] += 1
        if kind == "Q":
            text = body.split(b"\0", 1)[0].decode(errors="replace")
            if text.lstrip().upper().startswith("LISTEN"):
                self.stats.listener = True
            self.pending.append(text)
        elif kind == "P":
            name, rest = body.split(b"\0", 1)
            text = rest.split(b"\0", 1)[0].decode(errors="replace")
            if name:
                self.named[name] = text
            else:
                self.unnamed = text
        elif kind == "B":
            _portal, rest = body.split(b"\0", 1)
            name = rest.split(b"\0", 1)[0]
            self.bound.append(self.named.get(name, "?") if name else self.unnamed)
        elif kind == "E":
            self.pending.append(self.bound.popleft() if self.bound else self.unnamed)
        elif kind == "C" and body[:1] == b"S":  # Close of a prepared statement
            self.named.pop(body[1:].split(b"\0", 1)[0], None)

    # server -> client ----------------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        self.last_from_server = True
        self.sbuf += data
        while len(self.sbuf) >= 5:
            kind = chr(self.sbuf[0])
            (length,) = struct.unpack("!I", self.sbuf[1:5])
            if len(self.sbuf) < 1 + length:
                return
            body = bytes(self.sbuf[5 : 1 + length])
            del self.sbuf[: 1 + length]
            self._server_message(kind, body)

    def _server_message(self, kind: str, body: bytes) -> None:
        st = self.stats
        if kind == "C":  # CommandComplete
            text = self.pending.popleft() if self.pending else ""
            tag = body.rstrip(b"\0").decode(errors="replace").split(" ", 1)[0]
            st.statements[classify(text) if text else tag] += 1
            self.ran = True
        elif kind == "I":  # EmptyQueryResponse: SQLAlchemy's pool pre-ping sends ";"
            if self.pending:
                self.pending.popleft()
            st.statements["empty query (pool pre-ping)"] += 1
        elif kind == "E":  # ErrorResponse: the rest of this exchange is skipped
            st.statements["error"] += 1
            self.pending.clear()
            self.bound.clear()
        elif kind == "Z":
            st.ready += 1
            status = body[:1]
            if self.in_tx and status == b"I":
                st.transactions += 1
            elif not self.in_tx and status == b"I" and self.ran:
                st.transactions += 1
                st.implicit += 1
            self.in_tx = status in (b"T", b"E")
            self.ran = False
            self.pending.clear()
            self.bound.clear()
        elif kind == "A":
            st.notifications += 1


class CountingProxy:
    """``async with CountingProxy(5432) as proxy:`` then connect to ``proxy.port``."""

    def __init__(self, upstream_port: int, upstream_host: str = LOOPBACK) -> None:
        if upstream_host not in (LOOPBACK, "localhost", "::1"):
            raise ValueError("the proxy forwards to this machine's loopback only")
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.connections: list[ConnStats] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> CountingProxy:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:  # the pumps then end on their own
            with contextlib.suppress(Exception):
                writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def totals(self, *, listeners: bool = False) -> dict[str, Any]:
        """Sums over the connections (the LISTEN connections only, or all the others)."""
        out: dict[str, Any] = {
            "connections": 0,
            "round_trips": 0,
            "ready_for_query": 0,
            "transactions": 0,
            "implicit_transactions": 0,
            "notifications": 0,
        }
        statements: Counter[str] = Counter()
        for c in self.connections:
            if c.listener != listeners:
                continue
            out["connections"] += 1
            out["round_trips"] += c.bursts
            out["ready_for_query"] += c.ready
            out["transactions"] += c.transactions
            out["implicit_transactions"] += c.implicit
            out["notifications"] += c.notifications
            statements.update(c.statements)
        out["statements"] = dict(statements)
        return out

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        stats = ConnStats()
        self.connections.append(stats)
        session = _Session(stats)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        self._writers += [writer, up_writer]
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, session.from_client),
                self._pump(up_reader, writer, session.from_server),
            )
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, parse: Any) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                parse(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, RuntimeError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """``after - before`` of two ``CountingProxy.totals()``."""
    out = {k: after[k] - before[k] for k in after if k != "statements"}
    statements = Counter(after["statements"])
    statements.subtract(before["statements"])
    out["statements"] = {k: v for k, v in sorted(statements.items()) if v}
    return out
