"""A FastAPI service that enqueues jobs and mounts the admin, with the client opened and
closed by the app's lifespan.

    uvicorn examples.web.fastapi_app:app --port 8000
    # POST /signup?email=ann@example.com enqueues a job; the admin is at /admin/

CONVEYOR_URL chooses the store (default redis://localhost:6379/0). Run the workers
apart (``conveyor worker ...``): a web process only produces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import create_app

config = conveyor.Config()
client = conveyor.AsyncClient(config)
admin = create_app(config)  # a Litestar ASGI app: any framework can mount it


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with client:  # one storage connection pool for the process
        yield
    await admin.state.conveyor_admin.aclose()  # a mounted app gets no lifespan of its own


app = FastAPI(lifespan=lifespan)
app.mount("/admin", admin)


@app.post("/signup")
async def signup(email: str) -> dict[str, str]:
    job = await client.enqueue(Step(name=f"signup:{email}"))
    return {"job": job.id, "state": job.state.value}


@app.get("/jobs/{job_id}")
async def job_state(job_id: str) -> dict[str, str | None]:
    job = await client.get(job_id)
    return {"job": job_id, "state": job.state.value if job else None}
