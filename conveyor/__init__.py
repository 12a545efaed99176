"""Conveyor: background jobs with families.

A running job can declare children, released when its handler succeeds, and
heirs, released once it and everything below it has settled.
"""

from .__about__ import __version__
from .core.cancellation import Cancellation
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
    InvalidProgress,
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
from .core.plan import Member, PlannedFamily
from .core.progress import Progress
from .core.queues import QueueControls, QueueLimits, Rate
from .core.specs import EnqueueOptions
from .core.states import JobState, When
from .core.sync_client import Client
from .core.worker import Worker

__all__ = [
    "__version__",
    "AsyncClient",
    "Backoff",
    "BackendError",
    "BackendUnavailable",
    "Cancellation",
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
    "InvalidProgress",
    "InvalidSchedule",
    "InvalidState",
    "Job",
    "JobContext",
    "JobNotFound",
    "JobState",
    "LeaseLost",
    "Member",
    "MissingExtra",
    "NotInJob",
    "PayloadDecodeError",
    "PayloadError",
    "PayloadTooLarge",
    "PayloadTypeError",
    "PlannedFamily",
    "Predecessor",
    "Progress",
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
