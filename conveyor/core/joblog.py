"""Log records about a job carry the job: its id, type, queue, attempt and family root.

They travel as ``extra`` fields of the standard ``logging`` record (``job_id``,
``job_type``, ``queue``, ``attempt``, ``family_root``), so any formatter can print
them; ``conveyor worker --log-format json`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

from .job import Job

#: The ``extra`` fields a job's log records carry.
JOB_FIELDS = ("job_id", "job_type", "queue", "attempt", "family_root")


def job_fields(job: Job) -> dict[str, Any]:
    """``extra`` for a log record about ``job``."""
    return {
        "job_id": job.id,
        "job_type": job.type,
        "queue": job.queue,
        "attempt": job.attempt,
        "family_root": job.family_root,
    }


class JobLogger(logging.LoggerAdapter[logging.Logger]):
    """``ctx.log``: a logger whose records carry the running job (``JOB_FIELDS``),
    merged with any ``extra`` of the call."""

    def __init__(self, logger: logging.Logger, job: Job) -> None:
        super().__init__(logger, job_fields(job))

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        given: Mapping[str, Any] = kwargs.get("extra") or {}
        kwargs["extra"] = {**(self.extra or {}), **given}
        return msg, kwargs


__all__ = ["JOB_FIELDS", "JobLogger", "job_fields"]
