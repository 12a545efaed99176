"""Conveyor's own options on a PostgreSQL URL: read, checked, and removed before the URL
reaches SQLAlchemy."""

from __future__ import annotations

import pytest

import conveyor
from conveyor.backends.sql.pooling import Pooling, split_pooling


def test_a_url_without_options_is_left_as_it_is() -> None:
    url = "postgresql+psycopg://u:p@db:5432/app?sslmode=require"
    assert split_pooling(url) == (url, Pooling())


def test_the_options_are_read_and_the_rest_of_the_query_kept() -> None:
    url = (
        "postgresql+psycopg://u:p@bouncer:6432/app?sslmode=require&pooler=pgbouncer&direct=db:5433"
    )
    assert split_pooling(url) == (
        "postgresql+psycopg://u:p@bouncer:6432/app?sslmode=require",
        Pooling("pgbouncer", ("db", 5433)),
    )


def test_direct_defaults_to_the_postgresql_port_and_reads_ipv6() -> None:
    assert split_pooling("postgresql://h/d?pooler=pgbouncer&direct=db")[1].direct == ("db", 5432)
    assert split_pooling("postgresql://h/d?pooler=pgbouncer&direct=[::1]:5")[1].direct == ("::1", 5)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("pooler=pgpool", "pooler='pgpool' is not one of pgbouncer"),
        ("direct=db:5432", "pooler='' is not one of"),
        ("pooler=pgbouncer&direct=db:x", "direct='db:x' is not host:port"),
        ("pooler=pgbouncer&direct=", "direct='' is not host:port"),
    ],
)
def test_bad_options_are_a_configuration_error_that_hides_the_password(
    query: str, why: str
) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=why) as info:
        split_pooling(f"postgresql+psycopg://u:hunter2@h:6432/d?{query}")
    assert "hunter2" not in str(info.value)
