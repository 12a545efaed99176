"""Conveyor's peers, measured by the same workloads in their own virtualenvs.

``driver`` runs one workload on one peer (inside the peer's virtualenv); ``<name>_peer``
modules are the adapters; ``launch`` (in the harness's own environment) makes each
peer's virtualenv from its dependency group in pyproject.toml and runs the driver there.
Standard library only: this package is imported on both sides.
"""

from __future__ import annotations

#: Each peer: (the backend it runs on, its dependency group ``peer-<group>``, its title).
PEERS: dict[str, tuple[str, str, str]] = {
    "rq": ("redis", "rq", "RQ"),
    "arq": ("redis", "arq", "arq"),
    "saq": ("redis", "saq", "SAQ"),
    "dramatiq": ("redis", "dramatiq", "Dramatiq"),
    "celery": ("redis", "celery", "Celery"),
    "saq_postgres": ("postgres", "saq", "SAQ"),
    "procrastinate": ("postgres", "procrastinate", "procrastinate"),
}

#: The harness's workload names, as the driver calls them.
DRIVER_WORKLOADS = {
    "w1_single": "w1_single",
    "w1_batched": "w1_batched",
    "w2_default": "w2_default",
    "w2_tuned": "w2_tuned",
    "w3": "w3_latency",
    "w4": "w4_family",
    "w5": "w5_size",
}
