"""A Litestar service that enqueues jobs, with the admin among its routes and the client
opened and closed by the app's lifespan.

    uvicorn examples.web.litestar_app:app --port 8000
    # POST /signup?email=ann@example.com enqueues a job; the admin is at /admin/

CONVEYOR_URL chooses the store (default redis://localhost:6379/0). Run the workers
apart (``conveyor worker ...``): a web process only produces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get, post
from litestar.params import FromPath, FromQuery

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import admin_router

config = conveyor.Config()
client = conveyor.AsyncClient(config)
admin = admin_router(config, path="/admin")


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    async with client:  # one storage connection pool for the process
        yield
    await admin.opt["conveyor_admin"].aclose()


@post("/signup")
async def signup(email: FromQuery[str]) -> dict[str, str]:
    job = await client.enqueue(Step(name=f"signup:{email}"))
    return {"job": job.id, "state": job.state.value}


@get("/jobs/{job_id:str}")
async def job_state(job_id: FromPath[str]) -> dict[str, str | None]:
    job = await client.get(job_id)
    return {"job": job_id, "state": job.state.value if job else None}


app = Litestar([signup, job_state, admin], lifespan=[lifespan])
