"""Hostile input to ``AsyncClient.enqueue`` and ``enqueue_many``, on every backend.

Each call gets a payload and options drawn from odd corners: queue names with
control characters, invisible or astral Unicode, ``|`` and key-like text, empty
or just over 255 characters; payloads empty, at the size limit and one byte
over it, not messages at all; delays and times NaN, infinite, negative, naive,
centuries away; attempts, priorities and timeouts out of range or of the wrong
type; headers that are not strings or not a mapping. Every argument carries
the contract's verdict on it (accepted, refused, or either near a moving
boundary), and the property is:

- a call with only accepted arguments succeeds, and ``client.get`` then
  returns exactly the queue, type, payload and options that were given;
- a call with a refused argument raises the ``ConveyorError`` subclass for
  it (``InvalidJobOptions``, ``PayloadTooLarge``, ``PayloadTypeError``, or
  ``ConfigurationError`` for ``connection=``) and stores nothing;
- no call raises anything else, and a call that raises stores nothing.

The backend fixtures are function-scoped and shared by every example of a
test, so each example counts the stored jobs (listing and per-queue stats)
before and after its own call.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import conveyor
from conveyor import JobState
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.core.specs import MAX_DELAY_SECONDS, MAX_QUEUE_NAME
from conveyor.core.storage import JobEvent, JobFilter, Storage

# The property runs with a small payload limit, so that payloads at and over it
# are cheap; it is above 4096 bytes, where Redis stops storing payloads in pieces.
LIMIT = 5000
# A second or two per backend; set CONVEYOR_FUZZ_EXAMPLES for a deeper (random) search.
EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "40"))
CLOCK_SLACK = 5.0  # seconds: run_at this close to "now" may be queued or scheduled
TIME_TOLERANCE = 1e-4  # seconds lost to epoch-float storage of far-off instants


# --- the contract's verdicts --------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One argument: its value, whether the contract accepts it (``None``: either),
    and the error that refusing it raises."""

    value: Any
    ok: bool | None
    error: type[conveyor.ConveyorError] = conveyor.InvalidJobOptions


@dataclass(frozen=True)
class Case:
    messages: list[Part]
    many: bool
    options: dict[str, Part] = field(default_factory=dict)
    connection: Part | None = None

    def parts(self) -> list[Part]:
        extra = [self.connection] if self.connection is not None else []
        return [*self.messages, *self.options.values(), *extra]

    def verdict(self) -> bool | None:
        verdicts = [part.ok for part in self.parts()]
        if self.many and not self.messages:
            return None  # an empty batch stores nothing, so its options need not be checked
        if False in verdicts:
            return False
        return None if None in verdicts else True

    def refusals(self) -> tuple[type[conveyor.ConveyorError], ...]:
        """The errors a refusal may raise: those of the arguments not surely accepted."""
        return tuple({part.error for part in self.parts() if part.ok is not True})

    def option_values(self) -> dict[str, Any]:
        return {name: part.value for name, part in self.options.items()}


def long_type(length: int) -> type[Message]:
    """A message type whose full name is ``length`` characters long."""
    package = "conveyor_fuzz"
    name = "T" + "x" * (length - len(package) - 2)
    full_name = f"{package}.{name}"
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name=f"conveyor_fuzz/long_{length}.proto", package=package, syntax="proto3"
        )
        message = file.message_type.add(name=name)
        message.field.add(
            name="text",
            number=1,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
        pool.Add(file)
        descriptor = pool.FindMessageTypeByName(full_name)
    return message_factory.GetMessageClass(descriptor)


LONG_TYPES = {length: long_type(length) for length in (254, 255, 256, 1000)}


def sized(size: int) -> BasicJob:
    """A ``BasicJob`` whose serialized form is exactly ``size`` bytes (size >= 2)."""
    for count in (0, 1):  # count=1 adds two bytes, for sizes a name alone cannot make
        for length in range(max(size - 8, 0), size):
            message = BasicJob(name="x" * length, count=count)
            if message.ByteSize() == size:
                return message
    raise AssertionError(f"no BasicJob of exactly {size} bytes")


def judge_queue(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_QUEUE_NAME and value.isprintable()


def judge_seconds(value: object, *, zero_ok: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | timedelta):
        return False
    if isinstance(value, timedelta):
        seconds: float = value.total_seconds()
    elif isinstance(value, int):
        if not 0 <= value <= MAX_DELAY_SECONDS:
            return False
        seconds = value
    else:
        seconds = value
    if math.isnan(seconds) or not 0 <= seconds <= MAX_DELAY_SECONDS:
        return False
    return seconds > 0 or zero_ok


def judge_run_at(value: object) -> bool | None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        return False
    away = abs(value.timestamp() - time.time())
    if abs(away - MAX_DELAY_SECONDS) < 86400:
        return None  # at the edge of the window: the clock decides
    return away <= MAX_DELAY_SECONDS


def judge_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def judge_headers(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


# --- strategies -----------------------------------------------------------------------
#
# Each argument has a strategy for values the contract accepts, however odd,
# and one for values it refuses (or that sit on an edge). A case is clean (all
# accepted), has one bad argument, or mixes anything, so that successes,
# single refusals (whose error type is then exact) and pile-ups all occur.

# Any code point but lone surrogates, which protobuf string fields refuse to hold.
odd_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
printable = st.one_of(
    st.just(" "),
    st.characters(exclude_categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]),
)
good_queues = st.one_of(
    st.text(printable, min_size=1, max_size=30),
    st.builds(
        lambda char, n: char * n, printable, st.sampled_from([MAX_QUEUE_NAME - 1, MAX_QUEUE_NAME])
    ),
    st.sampled_from(
        [
            "a|b",
            "|",
            "x|1.5",
            "{t_x}:q:0:x",
            "*",
            "%s%n",
            "' OR 1=1 --",
            "<script>alert(1)</script>",
            "../../etc/passwd",
            "\U0001f600\U0001d518",
            "\ufffd",
            "é" * MAX_QUEUE_NAME,
            "\U0001d518" * MAX_QUEUE_NAME,  # astral: 4 bytes each in UTF-8
        ]
    ),
)
bad_queues = st.one_of(
    odd_text,  # mostly printable, now and then not
    st.sampled_from(
        [
            "",
            "\x00",
            "a\nb",
            "tab\there",
            "\u200b",  # zero-width space
            "\u00a0",  # no-break space
            "\u202eevil",  # right-to-left override
            "\ud800",  # a lone surrogate
            "q" * (MAX_QUEUE_NAME + 1),
            "é" * (MAX_QUEUE_NAME + 1),
        ]
    ),
    st.builds(lambda char, n: char * n, st.characters(), st.just(MAX_QUEUE_NAME + 1)),
    st.text(min_size=250, max_size=260),
    st.sampled_from([b"queue", 5, ["q"], 1.5, True]),
)

offsets = st.one_of(
    st.just(UTC),
    st.builds(
        timezone,
        st.timedeltas(
            min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
        ),
    ),
)
WITHIN = MAX_DELAY_SECONDS - 2 * 86400
good_run_ats = st.builds(
    lambda seconds, zone: (datetime.now(UTC) + timedelta(seconds=seconds)).astimezone(zone),
    st.one_of(st.floats(-WITHIN, WITHIN), st.sampled_from([0.0, -1.0, 1e-6, -WITHIN, WITHIN])),
    offsets,
)
bad_run_ats = st.one_of(
    st.datetimes(timezones=offsets),  # most of them centuries away
    st.sampled_from(
        [
            datetime.min.replace(tzinfo=UTC),
            datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
            datetime.max.replace(tzinfo=UTC),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
            datetime(1, 1, 1, tzinfo=UTC),
        ]
    ),
    st.datetimes(),  # naive
    st.sampled_from([datetime(2030, 1, 1).date(), "2030-01-01T00:00:00Z", 1e9, 0]),
)

good_seconds = st.one_of(
    st.floats(0, MAX_DELAY_SECONDS),  # subnormals and negative zero included
    st.integers(0, int(MAX_DELAY_SECONDS)),
    st.timedeltas(timedelta(0), timedelta(seconds=MAX_DELAY_SECONDS)),
    st.sampled_from([5e-324, 1e-300, MAX_DELAY_SECONDS, timedelta(microseconds=1)]),
)
bad_seconds = st.one_of(
    st.floats(),  # NaN, infinities, negatives, and sometimes a fine value
    st.integers(),
    st.timedeltas(),
    st.sampled_from(
        [
            0,
            -1,
            -5e-324,
            MAX_DELAY_SECONDS + 1,
            10**400,
            -(10**400),
            float("nan"),
            float("inf"),
            timedelta.max,
            timedelta.min,
            True,
            "5",
        ]
    ),
)

INT32 = (-(2**31), 2**31 - 1)
bad_ints = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31, -(2**31) - 1, 2**63, -(2**64), 10**30, True, False, 1.0, "3"]),
)
good_headers = st.one_of(
    st.dictionaries(odd_text, odd_text, max_size=4),
    st.dictionaries(st.sampled_from(["\x00", "k\ud800", "", "a|b"]), odd_text, max_size=2),
    st.dictionaries(odd_text, odd_text, max_size=2).map(types.MappingProxyType),
)
bad_headers = st.one_of(
    st.dictionaries(odd_text, st.sampled_from([1, None, b"v", ["v"]]), min_size=1, max_size=2),
    st.dictionaries(st.sampled_from([1, None, b"k"]), odd_text, min_size=1, max_size=2),
    st.sampled_from([[("a", "b")], "a=b", 5]),
)


def judged(
    strategy: st.SearchStrategy[Any], judge: Callable[[Any], bool | None]
) -> st.SearchStrategy[Part]:
    return strategy.map(lambda value: Part(value, judge(value)))


OPTIONS: dict[str, tuple[st.SearchStrategy[Part], st.SearchStrategy[Part]]] = {
    "queue": (judged(good_queues, judge_queue), judged(bad_queues, judge_queue)),
    "delay": (
        judged(good_seconds, lambda v: judge_seconds(v, zero_ok=True)),
        judged(bad_seconds, lambda v: judge_seconds(v, zero_ok=True)),
    ),
    "run_at": (judged(good_run_ats, judge_run_at), judged(bad_run_ats, judge_run_at)),
    "max_attempts": (
        judged(st.integers(1, 2**31 - 1), lambda v: judge_int(v, 1, 2**31 - 1)),
        judged(bad_ints, lambda v: judge_int(v, 1, 2**31 - 1)),
    ),
    "timeout": (
        judged(good_seconds, lambda v: judge_seconds(v, zero_ok=False)),
        judged(bad_seconds, lambda v: judge_seconds(v, zero_ok=False)),
    ),
    "priority": (
        judged(st.integers(*INT32), lambda v: judge_int(v, *INT32)),
        judged(st.one_of(bad_ints, st.none()), lambda v: judge_int(v, *INT32)),
    ),
    "headers": (
        judged(st.one_of(st.none(), good_headers), lambda v: v is None or judge_headers(v)),
        judged(bad_headers, lambda v: v is None or judge_headers(v)),
    ),
}


def payload_of_size(size: int) -> Part:
    return Part(sized(size), size <= LIMIT, conveyor.PayloadTooLarge)


good_payloads = st.one_of(
    st.builds(BasicJob, name=odd_text, count=st.integers(-(2**63), 2**63 - 1)),
    st.builds(
        Step,
        name=odd_text,
        fail_times=st.integers(0, 2**32 - 1),
        sleep_seconds=st.floats(),  # NaN and infinities are valid doubles
        children=st.lists(st.builds(Step, name=odd_text), max_size=3),
    ),
    st.just(BasicJob()),  # empty: zero bytes
    st.sampled_from([LIMIT - 1, LIMIT, 4096, 4097, 64, 65, 2]).map(sized),
    st.integers(2, LIMIT).map(sized),
    st.sampled_from([254, 255]).map(lambda n: LONG_TYPES[n](text="t")),
).map(lambda m: Part(m, True))
bad_payloads = st.one_of(
    st.sampled_from([LIMIT + 1, LIMIT + 2, 10 * LIMIT]).map(payload_of_size),
    st.sampled_from([{"name": "x"}, b"\x0a\x01x", "BasicJob", None, 42, BasicJob]).map(
        lambda v: Part(v, False, conveyor.PayloadTypeError)
    ),
)
# A type name over 255 characters is refused as the default queue, not as a payload.
long_named = st.sampled_from([256, 1000]).map(lambda n: LONG_TYPES[n](text="t"))


@st.composite
def cases(draw: st.DrawFn) -> Case:
    mode = draw(st.sampled_from(["clean", "one bad", "anything"]))
    names = ["messages", "messages", "messages", *OPTIONS, "both", "unknown", "connection"]
    bad = draw(st.sampled_from(names)) if mode == "one bad" else None

    def pick(name: str, good: st.SearchStrategy[Part], hostile: st.SearchStrategy[Part]) -> Part:
        if mode == "clean" or (mode == "one bad" and name != bad):
            return draw(good)
        if mode == "one bad":
            return draw(hostile)
        return draw(st.one_of(good, hostile))

    many = draw(st.booleans())
    count = draw(st.integers(1, 4)) if many else 1
    messages = [pick("messages", good_payloads, bad_payloads) for _ in range(count)]
    if many and mode != "one bad" and draw(st.integers(0, 9)) == 0:
        messages = []
    options: dict[str, Part] = {}
    timing = "run_at" if bad == "run_at" else "delay" if bad == "delay" else None
    timing = timing or draw(st.sampled_from(["none", "delay", "run_at"]))
    for name, (good, hostile) in OPTIONS.items():
        if name in ("delay", "run_at") and name != timing:
            continue
        if name == bad or draw(st.booleans()):
            options[name] = pick(name, good, hostile)
    if bad == "both" or (mode == "anything" and draw(st.integers(0, 7)) == 0):
        options["delay"] = Part(1, True)
        options["run_at"] = Part(datetime.now(UTC), True)
        options["both"] = Part(None, False)  # delay and run_at together are refused
    if bad == "unknown" or (mode == "anything" and draw(st.integers(0, 7)) == 0):
        options["prio"] = Part(1, False)  # not an option
    connection = None
    if bad == "connection" or (mode == "anything" and draw(st.integers(0, 7)) == 0):
        connection = Part("not a connection", False, conveyor.ConfigurationError)
    if messages and draw(st.integers(0, 9)) == 0:
        queue = options.get("queue")
        messages[0] = Part(draw(long_named), queue is not None and queue.value is not None)
    return Case(messages=messages, many=many, options=options, connection=connection)


# --- the property -------------------------------------------------------------------


async def stored(storage: Storage) -> tuple[int, int]:
    """How many jobs the storage holds: by listing them, and by its per-queue counts."""
    listed = 0
    cursor: str | None = None
    for _ in range(100):
        page = await storage.list_jobs(JobFilter(), after=cursor, limit=500)
        listed += len(page.jobs)
        cursor = page.next_cursor
        if cursor is None:
            break
    else:
        raise AssertionError("listing did not end after 100 pages")
    counted = sum(sum(stats.counts.values()) for stats in await storage.queue_stats())
    return listed, counted


def expected_queue(case: Case, message: Message) -> str:
    given = case.options.get("queue")
    if given is None or given.value is None:
        return message.DESCRIPTOR.full_name
    queue: str = given.value
    return queue


def check_job(
    job: conveyor.Job,
    case: Case,
    message: Message,
    config: conveyor.Config,
    window: tuple[float, float],
) -> None:
    """``job`` holds exactly what was given."""
    options = case.option_values()
    assert job.type == message.DESCRIPTOR.full_name
    assert job.queue == expected_queue(case, message)
    assert job.payload_bytes == message.SerializeToString()
    assert job.payload().SerializeToString() == message.SerializeToString()
    attempts = options.get("max_attempts")
    assert job.max_attempts == (config.max_attempts if attempts is None else attempts)
    assert job.priority == options.get("priority", 0)
    assert dict(job.headers) == dict(options.get("headers") or {})
    timeout = options.get("timeout")
    if isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    assert job.timeout == (None if timeout is None else float(timeout))
    assert job.attempt == 0
    assert job.parent_id is None and job.predecessor_id is None
    assert job.last_error is None

    before, after = window
    delay, run_at = options.get("delay"), options.get("run_at")
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay:
        assert job.run_at is not None
        assert (
            before + delay - TIME_TOLERANCE
            <= job.run_at.timestamp()
            <= after + delay + TIME_TOLERANCE
        )
    elif run_at is not None:
        assert job.run_at is not None
        assert abs((job.run_at - run_at).total_seconds()) <= TIME_TOLERANCE
    else:
        assert job.run_at is None
    if job.run_at is None or job.run_at.timestamp() < before - CLOCK_SLACK:
        assert job.state is JobState.QUEUED
    elif job.run_at.timestamp() > after + CLOCK_SLACK:
        assert job.state is JobState.SCHEDULED
    else:
        assert job.state in (JobState.QUEUED, JobState.SCHEDULED)


def label(text: str) -> None:
    """Count the example as ``text`` in ``--hypothesis-show-statistics``."""
    if currently_in_test_context():
        event(text)


async def check(
    case: Case, client: conveyor.AsyncClient, storage: Storage, config: conveyor.Config
) -> None:
    options = case.option_values()
    options.pop("both", None)
    messages = [part.value for part in case.messages]
    extra: dict[str, Any] = {}
    if case.connection is not None:
        extra["connection"] = case.connection.value
    verdict = case.verdict()
    before = await stored(storage)
    started = time.time()
    try:
        if case.many:
            jobs = await client.enqueue_many(messages, **extra, **options)
        else:
            jobs = [await client.enqueue(messages[0], **extra, **options)]
    except conveyor.ConveyorError as exc:
        label(f"refused: {type(exc).__name__}")
        assert verdict is not True, f"refused valid input: {exc!r}"
        assert isinstance(exc, case.refusals()), f"{exc!r} is not one of {case.refusals()}"
        assert await stored(storage) == before, f"{exc!r} was raised, yet something was stored"
        return
    window = (started, time.time())
    label(f"accepted {'a batch' if case.many else 'one job'}")
    assert verdict is not False, "accepted input the contract refuses"
    assert len(jobs) == len(messages)
    listed, counted = before
    assert await stored(storage) == (listed + len(jobs), counted + len(jobs))
    for job, message in zip(jobs, messages, strict=True):
        check_job(job, case, message, config, window)
        found = await client.get(job.id)
        assert found is not None, f"job {job.id} was returned but not stored"
        check_job(found, case, message, config, window)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="CONVEYOR_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
async def test_enqueue_stores_exactly_what_it_accepts(
    case: Case, config: conveyor.Config, storage: Storage
) -> None:
    small = replace(config, max_payload_bytes=LIMIT)
    await check(case, conveyor.AsyncClient(small, storage=storage), storage, small)


# Fixed cases, one per edge the random search may miss in a short run.
EDGES: list[Case] = [
    Case([payload_of_size(LIMIT)], many=False),
    Case([payload_of_size(LIMIT + 1)], many=False),
    Case([Part(BasicJob(), True), payload_of_size(LIMIT + 1)], many=True),
    Case(
        [Part(BasicJob(), True), Part({"name": "x"}, False, conveyor.PayloadTypeError)], many=True
    ),
    Case([], many=True),
    Case([Part(LONG_TYPES[256](text="t"), False)], many=False),  # its name is too long a queue
    Case([Part(LONG_TYPES[256](text="t"), True)], many=False, options={"queue": Part("q", True)}),
    Case([Part(LONG_TYPES[255](text="t"), True)], many=False),
    *[
        Case(
            [Part(BasicJob(name="x"), True)], many=False, options={"queue": Part(q, judge_queue(q))}
        )
        for q in [
            "",
            "a|b",
            "x|1.5",
            "\x00",
            "\u200b",
            "q" * 255,
            "q" * 256,
            "\U0001d518" * 255,
            "\ud800",
        ]
    ],
    *[
        Case([Part(BasicJob(), True)], many=False, options={"run_at": Part(v, judge_run_at(v))})
        for v in [
            datetime.min.replace(tzinfo=timezone(timedelta(hours=14))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-14))),
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(2000, 1, 1, tzinfo=UTC),
            datetime(2000, 1, 1),
            datetime.now(UTC) + timedelta(days=365 * 50),
        ]
    ],
    *[
        Case(
            [Part(BasicJob(), True)],
            many=False,
            options={"delay": Part(v, judge_seconds(v, zero_ok=True))},
        )
        for v in [10**400, float("nan"), float("inf"), -1, MAX_DELAY_SECONDS, 5e-324, timedelta.max]
    ],
    *[
        Case(
            [Part(BasicJob(), True)],
            many=False,
            options={"timeout": Part(v, judge_seconds(v, zero_ok=False))},
        )
        for v in [0, -0.0, 10**400, 1e-300, timedelta(microseconds=1)]
    ],
    *[
        Case(
            [Part(BasicJob(), True)],
            many=False,
            options={"max_attempts": Part(v, judge_int(v, 1, 2**31 - 1))},
        )
        for v in [0, -1, 2**31 - 1, 2**31, True, 2.0]
    ],
    *[
        Case(
            [Part(BasicJob(), True)],
            many=False,
            options={"priority": Part(v, judge_int(v, -(2**31), 2**31 - 1))},
        )
        for v in [2**31, -(2**31) - 1, 2**31 - 1, -(2**31), None, False]
    ],
    *[
        Case([Part(BasicJob(), True)], many=False, options={"headers": Part(v, judge_headers(v))})
        for v in [[("a", "b")], "a=b", {"k": 1}, {1: "v"}, {"\x00": "\x00"}, {"k": "\ud800"}]
    ],
    Case(
        [Part(BasicJob(), True)],
        many=False,
        options={
            "delay": Part(1, True),
            "run_at": Part(datetime.now(UTC), True),
            "both": Part(None, False),
        },
    ),
    Case(
        [Part(BasicJob(), True)],
        many=False,
        connection=Part("x", False, conveyor.ConfigurationError),
    ),
]


async def test_edge_cases_store_exactly_what_they_accept(
    config: conveyor.Config, storage: Storage
) -> None:
    small = replace(config, max_payload_bytes=LIMIT)
    client = conveyor.AsyncClient(small, storage=storage)
    for case in EDGES:
        await check(case, client, storage, small)


async def test_payload_at_the_default_limit_round_trips_and_one_byte_more_is_refused(
    config: conveyor.Config, client: conveyor.AsyncClient, storage: Storage
) -> None:
    limit = config.max_payload_bytes
    assert limit == 1 << 20
    at_limit = sized(limit)
    job = await client.enqueue(at_limit)
    found = await client.get(job.id)
    assert found is not None
    assert found.payload_bytes == at_limit.SerializeToString()
    with pytest.raises(conveyor.PayloadTooLarge):
        await client.enqueue(sized(limit + 1))
    with pytest.raises(conveyor.PayloadTooLarge):
        await client.enqueue_many([BasicJob(name="fine"), sized(limit + 1)])
    assert await stored(storage) == (1, 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: BasicJob(name="one"),
        lambda: None,
        lambda: 5,
        lambda: iter([BasicJob(), "not a message"]),
    ],
    ids=["a-single-message", "none", "an-int", "iterator-with-a-str"],
)
async def test_enqueue_many_of_a_non_list_is_a_typed_error(
    make: Callable[[], Any], client: conveyor.AsyncClient, storage: Storage
) -> None:
    with pytest.raises(conveyor.PayloadTypeError):
        await client.enqueue_many(make())
    assert await stored(storage) == (0, 0)


EVENT_QUEUES = ["a|b", "x|1.5", "|", "||", "{q}:0", "\U0001f600|\u00e9", "|" * MAX_QUEUE_NAME]


async def test_odd_queue_names_reach_event_subscribers(
    client: conveyor.AsyncClient, storage: Storage
) -> None:
    """Queue names may hold '|', the separator of the backends' event messages."""
    seen: list[JobEvent] = []

    async def consume() -> None:
        async for happened in storage.events():
            seen.append(happened)

    async def wait_for(job_id: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not task.done():
            if any(e.job_id == job_id for e in seen):
                return True
            await asyncio.sleep(0.02)
        return False

    task = asyncio.create_task(consume())
    try:
        for _ in range(40):  # until subscribed: a probe's event comes through
            probe = await client.enqueue(BasicJob(name="probe"), queue="probe")
            if await wait_for(probe.id, timeout=0.25) or task.done():
                break
        assert not task.done(), f"the stream ended: {task.exception()!r}"
        assert any(e.job_id == probe.id for e in seen), "no event came through"
        jobs = [await client.enqueue(BasicJob(name=q), queue=q) for q in EVENT_QUEUES]
        end = await client.enqueue(BasicJob(name="end"), queue="end")
        assert await wait_for(end.id), f"the stream ended: {task.done() and task.exception()!r}"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    for job in jobs:
        got = [(e.queue, e.state, e.type) for e in seen if e.job_id == job.id]
        assert got == [(job.queue, JobState.QUEUED, BasicJob.DESCRIPTOR.full_name)]
