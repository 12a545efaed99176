"""The errors Conveyor raises: one root, typed leaves.

Leaves also inherit the builtin that describes them best, so that
``except LookupError`` or ``except ValueError`` keeps working in user code.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base for everything Conveyor raises."""


class ConfigurationError(ConveyorError, ValueError):
    """A setting, URL or registration is wrong; fix the code or the configuration."""


class UnsupportedURL(ConfigurationError):
    """No backend serves this URL's scheme."""


class MissingExtra(ConfigurationError, ImportError):
    """A backend's driver is not installed; the message names the extra to install."""


class InvalidJobOptions(ConfigurationError):
    """An enqueue option is out of range or contradicts another."""


class InvalidLimits(ConfigurationError):
    """A queue limit is out of range (``QueueLimits``, ``Rate``)."""


class InvalidSchedule(ConfigurationError):
    """A periodic job's cron expression, time zone or options are wrong."""


class InvalidProgress(ConveyorError, ValueError):
    """``ctx.progress`` was given a fraction outside 0..1 or a note that is not a short string."""


class UnknownQueue(ConveyorError, LookupError):
    """No job, worker or control has ever named this queue."""

    def __init__(self, queue: str) -> None:
        super().__init__(
            f"no queue named {queue!r}: no job is in it, no worker listens on it and it "
            "has no controls (check the name, or the namespace)"
        )
        self.queue = queue


class HandlerError(ConfigurationError, TypeError):
    """A handler cannot be registered (no protobuf annotation, or a duplicate type)."""


class BackendError(ConveyorError):
    """The storage server answered with an error."""


class BackendUnavailable(BackendError, ConnectionError):
    """The storage server cannot be reached; safe to retry later."""


class UnknownType(ConveyorError, LookupError):
    """No protobuf descriptor is known for a job type."""


class PayloadError(ConveyorError, ValueError):
    """A payload cannot be accepted or read."""


class PayloadTypeError(PayloadError, TypeError):
    """Something that is not a protobuf message was given as a payload."""


class PayloadTooLarge(PayloadError):
    """A serialized payload is over ``Config.max_payload_bytes``."""


class PayloadDecodeError(PayloadError):
    """Stored bytes do not decode as the job's type."""


class DuplicateJobId(ConveyorError, ValueError):
    """One batch names the same job id twice; nothing of it was stored."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job id {job_id!r} appears twice in one batch; nothing was stored")
        self.job_id = job_id


class JobNotFound(ConveyorError, LookupError):
    """No job has this id (it never existed, or was pruned after its retention)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class InvalidState(ConveyorError):
    """A transition is not allowed from the job's current state."""

    def __init__(self, job_id: str, current: str, requested: str, why: str = "") -> None:
        detail = f": {why}" if why else ""
        super().__init__(f"cannot {requested} job {job_id} while it is {current}{detail}")
        self.job_id = job_id
        self.current = current
        self.requested = requested


class NotInJob(ConveyorError, RuntimeError):
    """``enqueue_child``/``enqueue_heir`` was called outside a running attempt."""


class LeaseLost(ConveyorError):
    """The worker no longer holds the job's lease (it expired or the job was cancelled)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"lease on job {job_id} is no longer held by this worker")
        self.job_id = job_id
