"""Conveyor: background jobs with families.

A running job can declare children, released when its handler succeeds, and
heirs, released once it and everything below it has settled.
"""

from .core.client import AsyncClient
from .core.config import Backoff, Config
from .core.context import JobContext
from .core.control import Fail, RetryIn
from .core.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
    DuplicateJobId,
    HandlerError,
    InvalidJobOptions,
    InvalidLimits,
    InvalidSchedule,
    InvalidState,
    JobNotFound,
    LeaseLost,
    MissingExtra,
    NotInJob,
    PayloadDecodeError,
    PayloadError,
    PayloadTooLarge,
    PayloadTypeError,
    UnknownQueue,
    UnknownType,
    UnsupportedURL,
)
from .core.explain import Explanation
from .core.job import Job, Predecessor
from .core.queues import QueueControls, QueueLimits, Rate
from .core.specs import EnqueueOptions
from .core.states import JobState, When
from .core.sync_client import Client
from .core.worker import Worker

__all__ = [
    "AsyncClient",
    "Backoff",
    "BackendError",
    "BackendUnavailable",
    "Client",
    "Config",
    "ConfigurationError",
    "ConveyorError",
    "DuplicateJobId",
    "EnqueueOptions",
    "Explanation",
    "Fail",
    "HandlerError",
    "InvalidJobOptions",
    "InvalidLimits",
    "InvalidSchedule",
    "InvalidState",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobState",
    "LeaseLost",
    "MissingExtra",
    "NotInJob",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLarge",
    "PayloadTypeError",
    "Predecessor",
    "QueueControls",
    "QueueLimits",
    "Rate",
    "RetryIn",
    "UnknownQueue",
    "UnknownType",
    "UnsupportedURL",
    "When",
    "Worker",
]
