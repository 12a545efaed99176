"""Handlers: functions that run jobs, with the payload type read from their annotation."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from google.protobuf.message import Message

from .errors import HandlerError

if TYPE_CHECKING:
    from .config import Backoff
    from .context import JobContext

# A handler may return a protobuf message: the job's result (Job.result()).
AsyncHandler = Callable[["JobContext", Any], Awaitable[Message | None]]
SyncHandler = Callable[["JobContext", Any], Message | None]
HandlerFunc = AsyncHandler | SyncHandler
CallNext = Callable[[], Awaitable[None]]
Middleware = Callable[["JobContext", Message, CallNext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler and what was learnt from its signature."""

    func: HandlerFunc
    message_type: type[Message]
    is_async: bool
    backoff: Backoff | None = None
    """Replaces ``Config.backoff`` for this type's retries."""

    @property
    def type_name(self) -> str:
        return self.message_type.DESCRIPTOR.full_name

    @classmethod
    def of(cls, func: HandlerFunc, *, backoff: Backoff | None = None) -> Handler:
        """Inspect ``func(ctx, msg: SomeMessage)``.

        Raises:
            HandlerError: it does not take two arguments, or the second is not
                annotated with a protobuf message class.
        """
        name = getattr(func, "__qualname__", repr(func))
        if not callable(func):
            raise HandlerError(f"{name} is not callable")
        params = list(inspect.signature(func).parameters.values())
        if len(params) != 2:
            raise HandlerError(
                f"handler {name} must take exactly (ctx, message), got {len(params)} parameters"
            )
        try:
            hints = typing.get_type_hints(func)
        except Exception as exc:  # an annotation that does not resolve
            raise HandlerError(f"cannot resolve the annotations of handler {name}: {exc}") from exc
        annotation = hints.get(params[1].name)
        concrete = (
            isinstance(annotation, type)
            and issubclass(annotation, Message)
            and getattr(annotation, "DESCRIPTOR", None) is not None
        )
        if not concrete:
            raise HandlerError(
                f"handler {name}: annotate its second parameter with a generated protobuf "
                f"message class (e.g. msg: mail_pb2.SendEmail), not {annotation!r}"
            )
        message_type = cast(type[Message], annotation)
        return cls(func, message_type, inspect.iscoroutinefunction(func), backoff)
