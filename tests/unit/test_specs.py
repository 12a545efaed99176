"""build_spec: payload checks, option validation, defaults and ids."""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Order
from conveyor.core.ids import new_id
from conveyor.core.specs import (
    MAX_QUEUE_NAME,
    Family,
    build_spec,
    initial_state,
    job_of,
    validate_queue,
)

BASIC = "conveyor.examples.BasicJob"


@pytest.fixture
def config() -> conveyor.Config:
    return conveyor.Config(url="memory://specs")


def spec_with(config: conveyor.Config, **options: Any) -> Any:
    return build_spec(config, BasicJob(name="n", count=1), **options)


# --- payload ----------------------------------------------------------------------------


def test_defaults(config: conveyor.Config) -> None:
    message = BasicJob(name="hello", count=7)
    spec = build_spec(config, message)
    assert spec.type == BASIC
    assert spec.queue == BASIC
    assert spec.payload == message.SerializeToString()
    assert spec.run_at is None
    assert spec.max_attempts == 5
    assert spec.timeout is None
    assert spec.priority == 0
    assert dict(spec.headers) == {}
    assert (spec.parent_id, spec.predecessor_id, spec.when, spec.optional) == (
        None,
        None,
        None,
        False,
    )


def test_max_attempts_default_comes_from_config() -> None:
    config = conveyor.Config(url="memory://specs", max_attempts=9)
    assert build_spec(config, BasicJob()).max_attempts == 9


@pytest.mark.parametrize(
    "payload",
    [{"name": "x"}, "BasicJob", b"\x0a\x01x", 42, None, BasicJob],
    ids=["dict", "str", "bytes", "int", "none", "class-not-instance"],
)
def test_non_protobuf_payload_is_rejected(config: conveyor.Config, payload: object) -> None:
    with pytest.raises(conveyor.PayloadTypeError, match="protobuf message instance") as info:
        build_spec(config, payload)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, conveyor.PayloadError)
    assert ".proto" in str(info.value)


def test_payload_over_limit_is_rejected() -> None:
    config = conveyor.Config(url="memory://specs", max_payload_bytes=16)
    message = BasicJob(name="x" * 40)
    with pytest.raises(conveyor.PayloadTooLarge) as info:
        build_spec(config, message)
    text = str(info.value)
    assert BASIC in text
    assert str(len(message.SerializeToString())) in text
    assert "16" in text
    assert "max_payload_bytes" in text


def test_payload_exactly_at_limit_is_accepted() -> None:
    message = BasicJob(name="x" * 10)
    size = len(message.SerializeToString())
    config = conveyor.Config(url="memory://specs", max_payload_bytes=size)
    assert build_spec(config, message).payload == message.SerializeToString()
    smaller = conveyor.Config(url="memory://specs", max_payload_bytes=size - 1)
    with pytest.raises(conveyor.PayloadTooLarge):
        build_spec(smaller, message)


def test_nested_payload_type(config: conveyor.Config) -> None:
    spec = build_spec(config, Order(order_id="o1"))
    assert spec.type == "conveyor.examples.Order"
    assert spec.queue == "conveyor.examples.Order"


# --- delay and run_at -------------------------------------------------------------------


def test_delay_and_run_at_together_are_rejected(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="delay or run_at, not both"):
        spec_with(config, delay=5, run_at=datetime.now(UTC))


def test_naive_run_at_is_rejected(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="timezone-aware") as info:
        spec_with(config, run_at=datetime(2030, 1, 1))
    assert "datetime.now(UTC)" in str(info.value)


def test_aware_run_at_is_stored_as_epoch(config: conveyor.Config) -> None:
    when = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert spec_with(config, run_at=when).run_at == when.timestamp()
    plus_five = datetime(2030, 1, 1, 17, 0, tzinfo=timezone(timedelta(hours=5)))
    assert spec_with(config, run_at=plus_five).run_at == when.timestamp()


@pytest.mark.parametrize("delay", [30, 30.0, timedelta(seconds=30)])
def test_delay_sets_run_at_from_now(config: conveyor.Config, delay: Any) -> None:
    before = time.time()
    spec = spec_with(config, delay=delay)
    after = time.time()
    assert spec.run_at is not None
    assert before + 30 <= spec.run_at <= after + 30


@pytest.mark.parametrize("delay", [0, 0.0, timedelta(0), None])
def test_zero_or_no_delay_means_now(config: conveyor.Config, delay: Any) -> None:
    spec = spec_with(config, delay=delay)
    assert spec.run_at is None
    assert initial_state(spec) is conveyor.JobState.QUEUED


def test_initial_state_follows_run_at(config: conveyor.Config) -> None:
    assert initial_state(spec_with(config, delay=60)) is conveyor.JobState.SCHEDULED
    past = datetime.now(UTC) - timedelta(hours=1)
    assert initial_state(spec_with(config, run_at=past)) is conveyor.JobState.QUEUED


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, timedelta(seconds=-1), math.nan],
    ids=["neg-int", "neg-float", "neg-timedelta", "nan"],
)
def test_negative_or_nan_delay_is_rejected(config: conveyor.Config, delay: Any) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="delay must be a non-negative duration"):
        spec_with(config, delay=delay)


@pytest.mark.parametrize("delay", [math.inf, timedelta.max], ids=["inf", "timedelta-max"])
def test_unrepresentable_delay_is_rejected(config: conveyor.Config, delay: Any) -> None:
    # Whatever build_spec accepts must also turn into a Job (AsyncClient.enqueue does
    # this right after storing the job).
    try:
        spec = spec_with(config, delay=delay)
    except conveyor.InvalidJobOptions:
        return
    job = job_of(spec, initial_state(spec))
    assert job.run_at is not None


def test_non_datetime_run_at_is_an_option_error(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions):
        spec_with(config, run_at=time.time() + 60)


# --- max_attempts, timeout, priority ----------------------------------------------------


@pytest.mark.parametrize("attempts", [0, -1, 2**31, 10**30, 1.5, "3"])
def test_bad_max_attempts_is_rejected(config: conveyor.Config, attempts: Any) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="max_attempts must be an integer"):
        spec_with(config, max_attempts=attempts)


def test_max_attempts_option_overrides_config(config: conveyor.Config) -> None:
    assert spec_with(config, max_attempts=1).max_attempts == 1
    assert spec_with(config, max_attempts=100).max_attempts == 100
    assert spec_with(config, max_attempts=2**31 - 1).max_attempts == 2**31 - 1


def test_bool_max_attempts_is_rejected(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions):
        spec_with(config, max_attempts=True)


@pytest.mark.parametrize("timeout", [0, 0.0, timedelta(0)])
def test_zero_timeout_is_rejected(config: conveyor.Config, timeout: Any) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="timeout must be positive"):
        spec_with(config, timeout=timeout)


@pytest.mark.parametrize("timeout", [-1, math.nan])
def test_negative_or_nan_timeout_is_rejected(config: conveyor.Config, timeout: Any) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="timeout must be a non-negative"):
        spec_with(config, timeout=timeout)


def test_timeout_in_seconds(config: conveyor.Config) -> None:
    assert spec_with(config, timeout=2.5).timeout == 2.5
    assert spec_with(config, timeout=timedelta(minutes=1)).timeout == 60.0
    assert spec_with(config, timeout=None).timeout is None


@pytest.mark.parametrize("priority", [True, False, 2**31, -(2**31) - 1, 1.5, "1", None])
def test_bad_priority_is_rejected(config: conveyor.Config, priority: Any) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="priority must be a 32-bit integer"):
        spec_with(config, priority=priority)


@pytest.mark.parametrize("priority", [2**31 - 1, -(2**31), 0, -5, 10])
def test_priority_in_range(config: conveyor.Config, priority: int) -> None:
    assert spec_with(config, priority=priority).priority == priority


# --- queue, headers, unknown options -----------------------------------------------------


def test_explicit_queue(config: conveyor.Config) -> None:
    assert spec_with(config, queue="mail").queue == "mail"
    assert spec_with(config, queue=None).queue == BASIC
    assert spec_with(config, queue="q" * MAX_QUEUE_NAME).queue == "q" * MAX_QUEUE_NAME


@pytest.mark.parametrize(
    ("queue", "pattern"),
    [
        ("", "1-255 characters"),
        ("q" * 256, "1-255 characters"),
        (5, "1-255 characters"),
        ("bad\nqueue", "unprintable"),
        ("tab\tqueue", "unprintable"),
        ("nul\x00", "unprintable"),
    ],
)
def test_bad_queue_is_rejected(config: conveyor.Config, queue: Any, pattern: str) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match=pattern):
        spec_with(config, queue=queue)
    with pytest.raises(conveyor.InvalidJobOptions, match=pattern):
        validate_queue(queue)


def test_headers_are_copied(config: conveyor.Config) -> None:
    headers = {"traceparent": "00-abc-def-01"}
    spec = spec_with(config, headers=headers)
    headers["traceparent"] = "changed"
    assert dict(spec.headers) == {"traceparent": "00-abc-def-01"}


def test_unknown_option_is_rejected(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="unknown enqueue options: retries"):
        spec_with(config, retries=3)


def test_unknown_options_are_all_named(config: conveyor.Config) -> None:
    with pytest.raises(conveyor.InvalidJobOptions, match="unknown enqueue options: eta, retries"):
        spec_with(config, retries=3, eta=1)


def test_option_error_is_also_a_value_error(config: conveyor.Config) -> None:
    with pytest.raises(ValueError, match="priority"):
        spec_with(config, priority=2**40)


def test_family_is_carried(config: conveyor.Config) -> None:
    family = Family(parent_id="p", optional=True)
    spec = build_spec(config, BasicJob(), family=family)
    assert (spec.parent_id, spec.predecessor_id, spec.optional) == ("p", None, True)
    heir = build_spec(
        config, BasicJob(), family=Family(predecessor_id="a", when=conveyor.When.SETTLED)
    )
    assert (heir.predecessor_id, heir.when, heir.is_heir) == ("a", conveyor.When.SETTLED, True)


# --- job_of -----------------------------------------------------------------------------


def test_job_of_mirrors_the_spec(config: conveyor.Config) -> None:
    message = BasicJob(name="x", count=3)
    spec = build_spec(config, message, queue="q", priority=4, delay=60, headers={"k": "v"})
    job = job_of(spec, initial_state(spec))
    assert isinstance(job, conveyor.Job)
    assert (job.id, job.type, job.queue, job.priority) == (spec.id, BASIC, "q", 4)
    assert job.state is conveyor.JobState.SCHEDULED
    assert job.run_at is not None and job.run_at.tzinfo is not None
    assert job.run_at.timestamp() == pytest.approx(spec.run_at)
    assert dict(job.headers) == {"k": "v"}
    assert job.payload() == message


# --- ids --------------------------------------------------------------------------------


def test_ids_are_uuid7_text(config: conveyor.Config) -> None:
    spec = build_spec(config, BasicJob())
    parsed = uuid.UUID(spec.id)
    assert parsed.version == 7
    assert str(parsed) == spec.id  # canonical, lower-case, hyphenated


def test_ids_are_unique_and_sort_by_creation(config: conveyor.Config) -> None:
    ids = [build_spec(config, BasicJob()).id for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_new_id_sorts_by_creation() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}
