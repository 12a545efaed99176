"""Handler registration on the Worker: signatures, annotations, duplicates and queues."""

import re
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf.message import Message

import conveyor
from conveyor._proto.examples.basic_pb2 import BasicJob
from conveyor._proto.examples.shop_pb2 import Order, Step
from conveyor.core.handlers import Handler

from . import _future_handlers

BASIC = "conveyor.examples.BasicJob"
ORDER = "conveyor.examples.Order"


@pytest.fixture
def worker() -> conveyor.Worker:
    return conveyor.Worker(conveyor.Config(url="memory://unit"))


async def async_basic(ctx: conveyor.JobContext, msg: BasicJob) -> None:
    del ctx, msg


def sync_order(ctx: conveyor.JobContext, msg: Order) -> None:
    del ctx, msg


def test_async_handler_is_registered(worker: conveyor.Worker) -> None:
    worker.register(async_basic)
    assert worker.types == [BASIC]
    handler = Handler.of(async_basic)
    assert handler.message_type is BasicJob
    assert handler.type_name == BASIC
    assert handler.is_async is True


def test_sync_handler_is_registered(worker: conveyor.Worker) -> None:
    worker.register(sync_order)
    assert worker.types == [ORDER]
    handler = Handler.of(sync_order)
    assert handler.message_type is Order
    assert handler.is_async is False


def test_decorator_returns_the_function(worker: conveyor.Worker) -> None:
    @worker.handler
    async def run_step(ctx: conveyor.JobContext, msg: Step) -> None:
        del ctx, msg

    assert callable(run_step)
    assert run_step.__name__ == "run_step"
    assert worker.types == ["conveyor.examples.Step"]


def test_parameter_names_do_not_matter(worker: conveyor.Worker) -> None:
    async def h(context: object, payload: BasicJob) -> None:
        del context, payload

    worker.register(h)
    assert worker.types == [BASIC]


def test_bound_method_is_accepted(worker: conveyor.Worker) -> None:
    class Service:
        async def handle(self, ctx: conveyor.JobContext, msg: BasicJob) -> None:
            del ctx, msg

    worker.register(Service().handle)
    assert worker.types == [BASIC]
    assert Handler.of(Service().handle).is_async is True


def test_postponed_annotations_are_resolved(worker: conveyor.Worker) -> None:
    worker.register(_future_handlers.handle_basic)
    worker.register(_future_handlers.handle_order)
    assert worker.types == [BASIC, ORDER]
    assert Handler.of(_future_handlers.handle_basic).message_type is BasicJob
    assert Handler.of(_future_handlers.handle_order).message_type is Order
    assert Handler.of(_future_handlers.handle_order).is_async is False


def test_unresolvable_postponed_annotation(worker: conveyor.Worker) -> None:
    with pytest.raises(conveyor.HandlerError, match="cannot resolve the annotations") as info:
        worker.register(_future_handlers.handle_summary)
    assert "handle_summary" in str(info.value)
    assert "Summary" in str(info.value)
    assert worker.types == []


def test_postponed_non_protobuf_annotation(worker: conveyor.Worker) -> None:
    with pytest.raises(conveyor.HandlerError, match="generated protobuf"):
        worker.register(_future_handlers.handle_int)


def test_missing_annotation(worker: conveyor.Worker) -> None:
    async def bare(ctx, msg):  # type: ignore[no-untyped-def]
        del ctx, msg

    with pytest.raises(conveyor.HandlerError) as info:
        worker.register(bare)
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, conveyor.ConfigurationError)
    message = str(info.value)
    assert "bare" in message
    assert "annotate its second parameter" in message
    assert "msg: mail_pb2.SendEmail" in message
    assert "not None" in message
    assert worker.types == []


@pytest.mark.parametrize("annotation", [int, str, dict, list[BasicJob], BasicJob | None, None])
def test_non_protobuf_annotation(worker: conveyor.Worker, annotation: Any) -> None:
    async def h(ctx: conveyor.JobContext, msg: Any) -> None:
        del ctx, msg

    h.__annotations__["msg"] = annotation
    with pytest.raises(conveyor.HandlerError, match="generated protobuf message class"):
        worker.register(h)


def test_first_parameter_annotation_is_not_the_type(worker: conveyor.Worker) -> None:
    async def swapped(msg: BasicJob, ctx: conveyor.JobContext) -> None:
        del ctx, msg

    with pytest.raises(
        conveyor.HandlerError, match=re.escape("not <class 'conveyor.core.context.JobContext'>")
    ):
        worker.register(swapped)


def _one(msg: BasicJob) -> None:
    del msg


def _three(ctx: conveyor.JobContext, msg: BasicJob, extra: int = 0) -> None:
    del ctx, msg, extra


def _none() -> None:
    pass


def _varargs(*args: BasicJob) -> None:
    del args


@pytest.mark.parametrize(
    ("func", "count"),
    [(_one, 1), (_three, 3), (_none, 0), (_varargs, 1)],
    ids=["one", "three", "none", "varargs"],
)
def test_wrong_arity(worker: conveyor.Worker, func: Any, count: int) -> None:
    with pytest.raises(conveyor.HandlerError, match=r"must take exactly \(ctx, message\)") as info:
        worker.register(func)
    assert isinstance(info.value, TypeError)
    assert f"got {count} parameters" in str(info.value)
    assert func.__name__ in str(info.value)


def test_not_callable(worker: conveyor.Worker) -> None:
    with pytest.raises(conveyor.HandlerError, match="is not callable"):
        worker.register(42)  # type: ignore[arg-type]


def test_second_handler_for_a_type_is_rejected(worker: conveyor.Worker) -> None:
    worker.register(async_basic)

    def another(ctx: conveyor.JobContext, msg: BasicJob) -> None:
        del ctx, msg

    with pytest.raises(conveyor.HandlerError) as info:
        worker.register(another)
    message = str(info.value)
    assert f"{BASIC} already has a handler" in message
    assert "async_basic" in message
    assert "one handler per type" in message
    assert worker.types == [BASIC]


def test_same_function_twice_is_rejected(worker: conveyor.Worker) -> None:
    worker.register(async_basic)
    with pytest.raises(conveyor.HandlerError, match="already has a handler"):
        worker.handler(async_basic)


def test_base_message_annotation_is_rejected(worker: conveyor.Worker) -> None:
    async def too_wide(ctx: conveyor.JobContext, msg: Message) -> None:
        del ctx, msg

    with pytest.raises(conveyor.HandlerError):
        worker.register(too_wide)


# --- queues and worker settings ---------------------------------------------------------


def test_queues_default_to_handled_types(worker: conveyor.Worker) -> None:
    assert worker.queues == []
    worker.register(sync_order)
    worker.register(async_basic)
    assert worker.queues == [BASIC, ORDER]
    assert worker.types == [BASIC, ORDER]


def test_explicit_queues_are_respected() -> None:
    worker = conveyor.Worker(conveyor.Config(url="memory://unit"), queues=("mail", "billing"))
    worker.register(async_basic)
    assert worker.queues == ["mail", "billing"]
    assert worker.types == [BASIC]
    worker.queues.append("tampered")
    assert worker.queues == ["mail", "billing"]


def test_worker_defaults() -> None:
    config = conveyor.Config(url="memory://unit")
    worker = conveyor.Worker(config)
    assert worker.config is config
    assert worker.concurrency == 10
    assert worker.lease == 30.0
    w2 = conveyor.Worker(config, lease=timedelta(seconds=5), shutdown_timeout=2)
    assert (w2.lease, w2.shutdown_timeout) == (5.0, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"concurrency": -3}, "concurrency must be at least 1"),
        ({"stage_batch": 0}, "stage_batch must be at least 1"),
        ({"lease": 0}, "lease must be positive"),
        ({"lease": timedelta(seconds=-1)}, "lease must be positive"),
    ],
)
def test_bad_worker_settings(kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(conveyor.ConfigurationError, match=pattern):
        conveyor.Worker(conveyor.Config(url="memory://unit"), **kwargs)


async def test_running_without_handlers_is_refused(worker: conveyor.Worker) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="register at least one handler"):
        await worker.run()


def test_run_sync_without_handlers_is_refused(worker: conveyor.Worker) -> None:
    with pytest.raises(conveyor.ConfigurationError, match="register at least one handler"):
        worker.run_sync()
