"""Scripts run on connections of their own (``_direct.DirectCalls``): a call cancelled
mid-way, a script's error and a script the server forgot leave no connection
answering the wrong call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from conveyor.backends.redis._direct import DirectCalls

pytestmark = pytest.mark.redis

SLOW = """
local t = redis.call('TIME')
local stop = tonumber(t[1]) * 1000000 + tonumber(t[2]) + 300000
repeat t = redis.call('TIME') until tonumber(t[1]) * 1000000 + tonumber(t[2]) >= stop
return 'slow'
"""


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    made = aioredis.Redis.from_url(redis_url)
    yield made
    await made.aclose()


@pytest.fixture
async def direct(client: aioredis.Redis) -> AsyncIterator[DirectCalls]:
    calls = DirectCalls(client.connection_pool)
    yield calls
    await calls.close()


async def test_a_call_cancelled_mid_way_drops_its_connection(
    client: aioredis.Redis, direct: DirectCalls
) -> None:
    slow, echo = client.register_script(SLOW), client.register_script("return ARGV[1]")
    await client.script_load(SLOW)  # so EVALSHA runs it at once
    call = asyncio.create_task(direct.run(slow, ["k"], []))
    await asyncio.sleep(0.1)  # sent, its reply not come yet
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    # The slow reply must not answer this call: it runs on a fresh connection.
    assert await direct.run(echo, ["k"], ["mine"]) == b"mine"
    await asyncio.sleep(0.4)
    assert await direct.run(echo, ["k"], ["again"]) == b"again"


async def test_a_scripts_error_is_raised_and_its_connection_kept(
    client: aioredis.Redis, direct: DirectCalls
) -> None:
    failing = client.register_script("return redis.error_reply('no good')")
    echo = client.register_script("return ARGV[1]")
    with pytest.raises(aioredis.ResponseError, match="no good"):
        await direct.run(failing, ["k"], [])
    [kept] = direct._idle  # the error was the whole reply
    assert await direct.run(echo, ["k"], ["fine"]) == b"fine"
    assert direct._idle == [kept]  # and the same connection answered


async def test_a_script_the_server_forgot_is_loaded_again(
    client: aioredis.Redis, direct: DirectCalls
) -> None:
    echo = client.register_script("return ARGV[1]")
    assert await direct.run(echo, ["k"], ["one"]) == b"one"
    await client.script_flush()
    assert await direct.run(echo, ["k"], ["two"]) == b"two"


async def test_a_killed_connection_is_replaced(client: aioredis.Redis, direct: DirectCalls) -> None:
    echo = client.register_script("return ARGV[1]")
    assert await direct.run(echo, ["k"], ["one"]) == b"one"
    [conn] = direct._idle
    await client.client_kill_filter(_id=str(await _client_id(conn)))
    assert await direct.run(echo, ["k"], ["two"]) == b"two"


async def _client_id(conn: object) -> int:
    await conn.send_command("CLIENT", "ID")  # type: ignore[attr-defined]
    reply: int = await conn.read_response()  # type: ignore[attr-defined]
    return reply


async def test_every_kind_of_argument_reaches_the_script_as_redis_py_would_send_it(
    client: aioredis.Redis, direct: DirectCalls
) -> None:
    """The command is packed by hiredis, not redis-py's encoder: the script must see
    the same strings for the str, bytes, int and float arguments the backend sends."""
    echo_all = client.register_script("return ARGV")
    args: list[str | bytes | int | float] = [
        "text", "é ü 日本", b"\x00\xffbinary", "", b"", 0, -7, 2**62, 0.1, 1.5e-7, 1796623352.33043,
    ]  # fmt: skip
    through_redis_py = await echo_all(keys=["k"], args=args)
    assert await direct.run(echo_all, ["k"], args) == through_redis_py
    assert through_redis_py[1] == "é ü 日本".encode() and through_redis_py[8] == b"0.1"
    with pytest.raises(TypeError):  # refused before anything is sent, as redis-py does
        await direct.run(echo_all, ["k"], [None])
    assert await direct.run(echo_all, ["k"], ["after"]) == [b"after"]
