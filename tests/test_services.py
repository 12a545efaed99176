"""CI needs both servers: these fail, never skip, when one is down."""

from __future__ import annotations

import pytest


@pytest.mark.redis
def test_redis_answers(redis_server: str) -> None:
    import redis

    with redis.Redis.from_url(redis_server) as client:
        assert client.ping() is True


@pytest.mark.postgres
def test_postgres_answers(postgres_server: str) -> None:
    import psycopg

    with psycopg.connect(postgres_server.replace("+psycopg", "")) as conn:
        row = conn.execute("select 1").fetchone()
    assert row == (1,)
