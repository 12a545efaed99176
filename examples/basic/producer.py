"""The original Conveyor README's producer, ported: enqueue one BasicJob.

    python examples/basic/producer.py

Storage comes from $CONVEYOR_URL (default: Redis at localhost:6379), e.g.
CONVEYOR_URL=sqlite:///example.db to try it without a server.
"""

from __future__ import annotations

import logging
import sys

import conveyor

# Generated from protos/examples/basic.proto; your project generates its own with protoc.
from conveyor._proto.examples.basic_pb2 import BasicJob

log = logging.getLogger("examples.basic")


def main() -> int:
    config = conveyor.Config()
    try:
        with conveyor.Client(config) as client:
            job = client.enqueue(BasicJob(name="Bob", count=123))
    except conveyor.ConveyorError as exc:
        log.error("failed to enqueue job: %s", exc)
        return 1
    log.info("job enqueued: %s", job.id)
    print(job.id)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
