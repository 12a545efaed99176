"""The admin end to end: real headless Chromium, a real uvicorn server, a real worker, Redis.

One scenario, as a person would use the admin: watch the dashboard count a
family of jobs without reloading, open the family's page and unfold its tree,
retry a job that failed for good, and cancel a scheduled one. Each step saves
a full-page screenshot under ``test-output/screenshots/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.async_api import Dialog, Page, async_playwright, expect

import conveyor
from conveyor._proto.examples.shop_pb2 import Step
from conveyor.admin import create_app
from tests.admin_browser.conftest import CHROMIUM_ARGS
from tests.support import FAST_BACKOFF, Journal, running, step, step_worker, wait_id

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(90)]

WAIT_MS = 20_000  # the longest any one expectation waits (ticks come once a second)
KIDS = 10


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port) in this event loop; yields its URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        log_config=None,  # keeps the test's handler on uvicorn.error (see errors_logged)
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    await task  # it failed to start: raise why
                    raise AssertionError("uvicorn stopped before it started")
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def errors_logged(*loggers: str) -> AsyncIterator[list[logging.LogRecord]]:
    """The errors these loggers log in the block (a handler of their own: Litestar's
    logging setup replaces the root logger's handlers, pytest's capture among them)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    try:
        yield records
    finally:
        for name in loggers:
            logging.getLogger(name).removeHandler(handler)


@contextlib.asynccontextmanager
async def browsing(chromium: str) -> AsyncIterator[tuple[Page, list[str]]]:
    """A fresh page in headless Chromium, and the JavaScript errors it raises."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = await browser.new_context(viewport={"width": 1360, "height": 860})
            page = await context.new_page()
            page.set_default_timeout(WAIT_MS)
            expect.set_options(timeout=WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            yield page, errors
        finally:
            expect.set_options(timeout=5_000)  # playwright's default, for whoever comes next
            await browser.close()


def healing(healed: asyncio.Event) -> Callable[..., Awaitable[None]]:
    """Middleware: once ``healed`` is set, a ``Step`` that was told to fail no longer does."""

    async def middleware(ctx: conveyor.JobContext, msg: Any, call_next: Any) -> None:
        if healed.is_set() and isinstance(msg, Step):
            msg.fail = False
        await call_next()

    return middleware


def family() -> Step:
    """An order whose batch has ten children (one fails once, then succeeds) and an heir."""
    kids = [step(f"kid{i}", sleep=0.3) for i in range(KIDS)]
    batch = step("batch", children=[*kids, step("flaky", fail_times=1)], heirs=[step("summary")])
    return step("order", children=[batch], heirs=[step("report")])


FAMILY_SIZE = 1 + 1 + KIDS + 1 + 1 + 1  # order, batch, kids, flaky, summary, report


async def test_admin_in_a_browser(
    redis_url: str,
    namespace: str,
    chromium: str,
    screenshots: Path,
) -> None:
    config = conveyor.Config(url=redis_url, namespace=namespace, backoff=FAST_BACKOFF)
    journal = Journal()
    healed = asyncio.Event()
    worker = step_worker(config, journal)
    worker.use(healing(healed))

    async def shot(page: Page, name: str) -> None:
        await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    async with (
        errors_logged("uvicorn.error", "conveyor.admin") as server_errors,
        conveyor.AsyncClient(config) as client,
        serving(create_app(config)) as base,
        running(worker),
        browsing(chromium) as (page, errors),
    ):
        # 1. The dashboard, live: counts change while the page stays the same page.
        await page.goto(f"{base}/")
        await expect(page.locator("h1")).to_have_text("Dashboard")
        await expect(page.locator("#live-status")).to_have_class(re.compile(r"\bon\b"))
        succeeded = page.locator("#totals [data-state=succeeded]")
        await expect(succeeded).to_have_text("0")
        await page.evaluate("window.__sameDocument = true")
        await shot(page, "01-dashboard-empty")

        order = await client.enqueue(family())
        assert (await client.wait(order.id, timeout=20)).state is conveyor.JobState.SUCCEEDED
        await expect(succeeded).to_have_text(str(FAMILY_SIZE), timeout=WAIT_MS)
        await expect(page.locator("#totals [data-state=failed]")).to_have_text("0")
        assert await page.evaluate("window.__sameDocument") is True, "the dashboard reloaded"
        await expect(page.locator("#queue-table tbody tr")).to_have_count(1)
        await expect(page.locator("#charts svg")).to_have_count(2)
        await shot(page, "02-dashboard-after-family")

        # 2. The family's page: unfold the batch one level and see its children's states.
        await page.goto(f"{base}/jobs/{order.id}")
        summary = page.locator("#job-summary")
        await expect(summary.locator(".summary-head .badge")).to_have_text("succeeded")
        tree = page.locator("#family-tree")
        batch_id = await wait_id(journal, "batch")
        top_level = tree.locator(":scope > .tree-level > li")
        await expect(top_level).to_have_count(3)  # batch, summary (batch's heir), report
        toggle = page.get_by_role("button", name=f"Show the children of {batch_id}")
        await toggle.click()
        await expect(toggle).to_have_attribute("aria-expanded", "true")
        unfolded = tree.locator("li", has=toggle).locator(":scope > .tree-children")
        rows = unfolded.locator(".tree-row")  # the kids, flaky, and summary as batch's heir
        await expect(rows).to_have_count(KIDS + 2)
        await expect(rows.locator(".badge.state-succeeded")).to_have_count(KIDS + 2)
        await shot(page, "03-job-family-unfolded")

        # 3. A job that failed for good, on /failed; retried from its page, it succeeds.
        fragile = await client.enqueue(step("fragile", fail=True), max_attempts=1)
        assert (await client.wait(fragile.id, timeout=20)).state is conveyor.JobState.FAILED
        await page.goto(f"{base}/failed")
        row = page.locator(f"#job-table tr[data-id='{fragile.id}']")
        await expect(row.locator(".badge")).to_have_text("failed")
        await expect(row.locator(".error-cell")).to_contain_text("fails on attempt 1")
        await shot(page, "04-failed-list")

        await row.get_by_role("link", name=fragile.id[:8], exact=False).click()
        await expect(page).to_have_url(f"{base}/jobs/{fragile.id}")
        await expect(summary.locator(".traceback")).to_contain_text("RuntimeError")
        await shot(page, "05-failed-job")
        healed.set()
        async with page.expect_response(f"{base}/jobs/{fragile.id}/retry") as retried:
            await summary.get_by_role("button", name="Retry").click()
        assert (await retried.value).ok
        assert "Queued again" in await (await retried.value).text()
        await expect(summary.locator(".summary-head .badge")).to_have_text(
            "succeeded", timeout=WAIT_MS
        )
        await shot(page, "06-retried-job-succeeded")

        # 4. A scheduled job, cancelled from its page (the button asks first).
        later = await client.enqueue(step("later"), delay=timedelta(minutes=10))
        await page.goto(f"{base}/scheduled")
        await expect(page.locator(f"#job-table tr[data-id='{later.id}'] .badge")).to_have_text(
            "scheduled"
        )
        await shot(page, "07-scheduled-list")
        await page.goto(f"{base}/jobs/{later.id}")
        await expect(summary.locator(".summary-head .badge")).to_have_text("scheduled")
        asked: list[str] = []

        async def accept(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.accept()

        page.once("dialog", accept)
        async with page.expect_response(f"{base}/jobs/{later.id}/cancel") as cancelled:
            await summary.get_by_role("button", name="Cancel").click()
        assert (await cancelled.value).ok
        assert asked and asked[0].startswith("Cancel this job"), asked
        await expect(summary.locator(".summary-head .badge")).to_have_text("cancelled")
        await shot(page, "08-scheduled-job-cancelled")
        assert (await client.get(later.id)).state is conveyor.JobState.CANCELLED  # type: ignore[union-attr]

        # The other pages, for the record.
        for name, path in [
            ("09-queues", "/queues"),
            ("10-jobs", "/jobs"),
            ("11-workers", "/workers"),
        ]:
            await page.goto(f"{base}{path}")
            await expect(page.locator("main")).to_be_visible()
            await shot(page, name)
        await page.goto(f"{base}/")
        await expect(page.locator("#totals [data-state=cancelled]")).to_have_text("1")
        await shot(page, "12-dashboard-end")

        assert errors == []
        assert [r.ok for r in journal.runs["fragile"]] == [False, True]

    # Leaving pages (closing their event streams) and shutting down logged no server error.
    assert not server_errors, "\n\n".join(map(logging.Formatter().format, server_errors))
