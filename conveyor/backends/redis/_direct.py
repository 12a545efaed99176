"""Running the scripts on connections of their own, past redis-py's command layer.

Every transition is one EVALSHA, and on this path redis-py's ``execute_command``
costs as much as the script does on the server: the pool's lock, a readiness
check of the socket before each command (a ``recv`` syscall), the retry wrapper
and the observability hooks, all per call (measured in bench/README.md: a
one-round-trip enqueue at 180-194 µs through it, 150-157 µs without). A
``DirectCalls`` keeps its own idle connections, made by the client's pool with
the client's options, so each call is one packed write and one read.

What redis-py's layer is for still happens, by falling back to it: a script the
server does not know (``NOSCRIPT``, after a restart) is loaded by redis-py's
``Script``, and a connection that fails is dropped and the call made again
through the client, with its retry policy, as the first attempt of
``execute_command`` would have been. A call cancelled mid-way drops its
connection: what it left unread would answer the next call.

The command is packed by hiredis in one C call. redis-py's packer runs its encoder
in Python over every argument first, and a worker's settle of 30 outcomes has 240
(measured: 99 µs to pack them that way, 18 µs by hiredis). Both give the same bytes
for the str, bytes, int and float arguments the scripts take; hiredis refuses
anything else with a ``TypeError``, as redis-py's encoder does with ``DataError``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _hiredis_pack = None

if TYPE_CHECKING:
    import redis
    from redis.asyncio.connection import AbstractConnection, ConnectionPool
    from redis.commands.core import AsyncScript, Script

#: Idle connections kept; more are closed when handed back (a burst of concurrent
#: calls opens as many as it needs).
MAX_IDLE = 32


class DirectCalls:
    """EVALSHA on connections from ``pool.make_connection()``, kept here."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        self._idle: list[AbstractConnection] = []

    async def run(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply, as ``script(keys=keys, args=args)`` would give it."""
        conn: Any = self._idle.pop() if self._idle else self._new()
        try:
            await conn.connect()  # at once when it is connected already
            await conn.send_packed_command(_evalsha(conn, script, keys, args), check_health=False)
            reply = await conn.read_response()
        except redis_errors.NoScriptError:
            await self._hand_back(conn)  # the error was the whole reply
            return await script(keys=keys, args=args)  # loads it, then runs it
        except redis_errors.ResponseError:
            await self._hand_back(conn)  # the script's own error: the caller's to translate
            raise
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            await conn.disconnect()
            return await script(keys=keys, args=args)  # through the client's retries
        except BaseException:
            await conn.disconnect()  # cancelled mid-call: the reply may still come
            raise
        await self._hand_back(conn)
        return reply

    def _new(self) -> Any:  # an AbstractConnection: its methods are untyped
        return self._pool.make_connection()  # type: ignore[no-untyped-call]

    async def _hand_back(self, conn: AbstractConnection) -> None:
        if len(self._idle) < MAX_IDLE:
            self._idle.append(conn)
        else:
            await conn.disconnect()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.disconnect()


class BlockingCalls:
    """The same calls, blocking, from any thread: the sync producer's enqueue
    (``RedisStorage.blocking_enqueuer``). It owns its client; idle connections are
    shared under a lock."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._idle: list[Any] = []  # redis.Connection: its methods are untyped
        self._lock = threading.Lock()

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply, as ``script(keys=keys, args=args)`` would give it."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self.client.connection_pool.make_connection()
        try:
            conn.connect()  # at once when it is connected already
            conn.send_packed_command(_evalsha(conn, script, keys, args), check_health=False)
            reply = conn.read_response()
        except redis_errors.NoScriptError:
            self._hand_back(conn)
            return script(keys=keys, args=args)
        except redis_errors.ResponseError:
            self._hand_back(conn)
            raise
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            conn.disconnect()
            return script(keys=keys, args=args)
        except BaseException:
            conn.disconnect()  # interrupted mid-call (KeyboardInterrupt): a reply may come
            raise
        self._hand_back(conn)
        return reply

    def _hand_back(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.disconnect()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()
        self.client.close()


def _evalsha(
    conn: Any, script: AsyncScript | Script, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    """The EVALSHA command packed, as the list of chunks both connections send: by
    hiredis in one C call, or by the connection."""
    if _hiredis_pack is not None:
        return [_hiredis_pack(("EVALSHA", script.sha, len(keys), *keys, *args))]
    return conn.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
