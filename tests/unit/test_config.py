"""Config defaults and validation, URL masking, and the retry back-off."""

from __future__ import annotations

import math
import sys
from datetime import timedelta

import pytest

import conveyor
from conveyor.core import config as config_module
from conveyor.core.config import DEFAULT_URL, Backoff, Config, mask_url

# --- Config defaults -------------------------------------------------------------------


def test_url_defaults_to_conveyor_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "memory://from-env")
    assert Config().url == "memory://from-env"


def test_url_defaults_to_local_redis_without_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    assert Config().url == "redis://localhost:6379/0"
    assert DEFAULT_URL == "redis://localhost:6379/0"


def test_empty_env_url_falls_back_to_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "")
    assert Config().url == DEFAULT_URL


def test_env_is_read_when_config_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "memory://first")
    first = Config()
    monkeypatch.setenv("CONVEYOR_URL", "memory://second")
    assert (first.url, Config().url) == ("memory://first", "memory://second")


def test_explicit_url_wins_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_URL", "memory://from-env")
    assert Config(url="memory://explicit").url == "memory://explicit"


def test_other_defaults() -> None:
    config = Config(url="memory://defaults")
    assert config.namespace == "conveyor"
    assert config.max_attempts == 5
    assert config.max_payload_bytes == 1 << 20
    assert config.retention == timedelta(hours=24)
    assert config.max_lost == 3
    assert config.migrate is True
    assert config.backoff == Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=True)


def test_public_names_are_the_core_classes() -> None:
    assert conveyor.Config is Config
    assert conveyor.Backoff is Backoff


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("memory://x", "memory"),
        ("MEMORY://x", "memory"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///tmp/x.db", "sqlite"),
    ],
)
def test_scheme_is_lower_cased(url: str, scheme: str) -> None:
    assert Config(url=url).scheme == scheme


def test_config_is_frozen() -> None:
    config = Config(url="memory://frozen")
    with pytest.raises(AttributeError):
        config.namespace = "other"  # type: ignore[misc]


# --- Config validation ------------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["conveyor", "_private", "a", "a1_b2", "x" * 40])
def test_valid_namespaces(namespace: str) -> None:
    assert Config(url="memory://ns", namespace=namespace).namespace == namespace


@pytest.mark.parametrize(
    "namespace",
    ["", "Conveyor", "1abc", "a-b", "a.b", "a b", "x" * 41, "ünï"],
)
def test_invalid_namespace_is_a_configuration_error(namespace: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="namespace") as info:
        Config(url="memory://ns", namespace=namespace)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, conveyor.ConveyorError)
    assert "lower-case letters, digits or '_'" in str(info.value)


def test_namespace_with_trailing_newline_is_rejected() -> None:
    with pytest.raises(conveyor.ConfigurationError):
        Config(url="memory://ns", namespace="conveyor\n")


@pytest.mark.parametrize("attempts", [0, -1])
def test_max_attempts_below_one_is_rejected(attempts: int) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="max_attempts must be at least 1"):
        Config(url="memory://x", max_attempts=attempts)


def test_other_numeric_settings_are_validated() -> None:
    with pytest.raises(conveyor.ConfigurationError, match="max_payload_bytes"):
        Config(url="memory://x", max_payload_bytes=0)
    with pytest.raises(conveyor.ConfigurationError, match="max_lost"):
        Config(url="memory://x", max_lost=-1)
    with pytest.raises(conveyor.ConfigurationError, match="retention"):
        Config(url="memory://x", retention=timedelta(seconds=-1))


@pytest.mark.parametrize("url", ["localhost:6379", "just-a-name", "", "/var/run/redis.sock"])
def test_non_url_is_rejected_with_examples(url: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="is not a URL") as info:
        Config(url=url)
    message = str(info.value)
    assert "redis://localhost:6379/0" in message
    assert "memory://" in message
    assert "sqlite:///" in message


def test_non_url_error_masks_a_password() -> None:
    with pytest.raises(conveyor.ConfigurationError) as info:
        Config(url="//:hunter2@host:6379/0")
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)


# --- repr and mask_url ------------------------------------------------------------------


def test_repr_masks_the_password() -> None:
    config = Config(url="redis://:secret@host:6379/0", namespace="app")
    text = repr(config)
    assert "secret" not in text
    assert text == "Config(url='redis://:***@host:6379/0', namespace='app')"
    assert "secret" not in str(config)
    assert "secret" not in f"{config}"


def test_repr_without_password_shows_url() -> None:
    assert (
        repr(Config(url="memory://plain")) == "Config(url='memory://plain', namespace='conveyor')"
    )


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
        ("redis://:secret@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://u:secret@[2001:db8::1]/2", "redis://u:***@[2001:db8::1]/2"),
        (
            "postgresql+psycopg://app:s3cr%40t@db.example:5432/jobs?sslmode=require",
            "postgresql+psycopg://app:***@db.example:5432/jobs?sslmode=require",
        ),
        ("redis://user:@host/0", "redis://user:***@host/0"),
    ],
)
def test_mask_url_hides_password(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379/0",
        "redis://user@host:6379/0",
        "redis://[::1]:6379/0",
        "memory://",
        "sqlite:///tmp/jobs.db",
        "not a url at all",
    ],
)
def test_mask_url_without_password_is_unchanged(url: str) -> None:
    assert mask_url(url) == url


def test_mask_url_with_bad_port_still_masks() -> None:
    masked = mask_url("redis://:secret@host:notaport/0")
    assert "secret" not in masked


# --- Backoff ----------------------------------------------------------------------------


def test_backoff_exponential_without_jitter() -> None:
    backoff = Backoff(base=1, factor=2, cap=3600, jitter=False)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 32, 64]
    assert backoff.delay(12) == 2048
    assert backoff.delay(13) == 3600  # 4096 capped
    assert backoff.delay(50) == 3600


def test_backoff_counts_attempts_from_one() -> None:
    backoff = Backoff(base=3.0, factor=10.0, cap=1e9, jitter=False)
    assert backoff.delay(1) == 3.0
    assert backoff.delay(2) == 30.0
    # attempt numbers below 1 behave like the first attempt
    assert backoff.delay(0) == 3.0
    assert backoff.delay(-5) == 3.0


def test_backoff_factor_one_is_constant() -> None:
    backoff = Backoff(base=0.5, factor=1.0, cap=10.0, jitter=False)
    assert {backoff.delay(n) for n in range(1, 50)} == {0.5}


def test_backoff_cap_below_base_wins() -> None:
    assert Backoff(base=10.0, factor=2.0, cap=3.0, jitter=False).delay(1) == 3.0


def test_backoff_zero_base_is_zero() -> None:
    backoff = Backoff(base=0.0, factor=2.0, cap=10.0, jitter=True)
    assert [backoff.delay(n) for n in (1, 5, 1000)] == [0.0, 0.0, 0.0]


def test_backoff_zero_base_stays_zero_for_huge_attempts() -> None:
    backoff = Backoff(base=0.0, factor=2.0, cap=10.0, jitter=False)
    assert backoff.delay(10_000) == 0.0


def test_backoff_jitter_draws_between_half_and_full(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, float]] = []

    def fake_uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return low

    monkeypatch.setattr(config_module.random, "uniform", fake_uniform)
    backoff = Backoff(base=1.0, factor=2.0, cap=100.0, jitter=True)
    assert backoff.delay(3) == 2.0
    assert backoff.delay(20) == 50.0
    assert calls == [(2.0, 4.0), (50.0, 100.0)]


def test_backoff_jitter_bounds() -> None:
    backoff = Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=True)
    plain = Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=False)
    for attempt in range(1, 20):
        full = plain.delay(attempt)
        draws = [backoff.delay(attempt) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in draws), (attempt, min(draws), max(draws))
        assert len(set(draws)) > 1  # it is actually jittered


@pytest.mark.parametrize("attempt", [1_100, 10**6, 10**18, sys.maxsize])
def test_backoff_huge_attempts_are_capped_not_overflowing(attempt: int) -> None:
    plain = Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=False)
    assert plain.delay(attempt) == 3600.0
    jittered = Backoff(base=1.0, factor=2.0, cap=3600.0, jitter=True)
    delay = jittered.delay(attempt)
    assert math.isfinite(delay)
    assert 1800.0 <= delay <= 3600.0


@pytest.mark.parametrize(
    "kwargs",
    [{"base": -1.0}, {"factor": 0.5}, {"factor": 0.0}, {"cap": -0.1}],
)
def test_backoff_invalid_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=r"base >= 0, factor >= 1 and cap >= 0"):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["base", "factor", "cap"])
def test_backoff_nan_parameters_are_rejected(field: str) -> None:
    with pytest.raises(conveyor.ConfigurationError):
        Backoff(**{field: math.nan})  # type: ignore[arg-type]


def test_malformed_url_error_never_shows_the_password() -> None:
    with pytest.raises(conveyor.ConfigurationError) as info:
        Config(url="redis:/:hunter2@host:6379/0")
    assert "hunter2" not in str(info.value)
