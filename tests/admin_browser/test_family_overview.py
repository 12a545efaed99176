"""A family at a glance, in headless Chromium: the summary and timeline of a family that
failed, its repair from the page (one click, the page updates live), and a family of
2,000 members drawn by level and type. Screenshots go to ``test-output/screenshots/``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Dialog, Page, expect

import conveyor
from conveyor.admin import create_app
from tests.admin_browser.test_browser import WAIT_MS, browsing, errors_logged, healing, serving
from tests.support import FAST_BACKOFF, Journal, running, step, step_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

BIG = 2000


async def test_family_overview_repair_and_a_large_family(
    redis_url: str, namespace: str, chromium: str, screenshots: Path
) -> None:
    config = conveyor.Config(url=redis_url, namespace=namespace, backoff=FAST_BACKOFF)
    healed = asyncio.Event()
    worker = step_worker(config, Journal(), concurrency=32)
    worker.use(healing(healed))

    async def shot(page: Page, name: str) -> None:
        await page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)

    kids = [step(f"line{i}", sleep=0.05 * (i % 4)) for i in range(8)]
    order = step(
        "order",
        children=[step("batch", children=[*kids, step("broken", fail=True)], heirs=[step("pack")])],
        heirs=[step("report")],
    )
    async with (
        errors_logged("uvicorn.error", "conveyor.admin") as server_errors,
        conveyor.AsyncClient(config) as client,
        serving(create_app(config)) as base,
        running(worker),
        browsing(chromium) as (page, errors),
    ):
        root = await client.enqueue(order, max_attempts=2)
        assert (await client.wait(root.id, timeout=30)).state is conveyor.JobState.FAILED

        # 1. The failed family: counts by state and type, held/cancelled heirs, a timeline.
        await page.goto(f"{base}/jobs/{root.id}")
        overview = page.locator("#family-overview")
        await expect(overview.locator("h2")).to_contain_text("13 members")
        await expect(overview.locator("h2")).to_contain_text("2 levels deep")
        rows = overview.locator("svg.waterfall g.row")
        await expect(rows).to_have_count(13)
        await expect(overview.locator("svg.waterfall g.row.state-failed")).to_have_count(3)
        await expect(overview.locator(".overview-counts")).to_contain_text("cancelled")
        await shot(page, "11-family-overview-failed")

        # 2. Repair from the page: fix the cause, one click, the page follows live.
        healed.set()
        page.once("dialog", lambda dialog: asyncio.ensure_future(_accept(dialog)))
        summary = page.locator("#job-summary")
        async with page.expect_response(f"{base}/jobs/{root.id}/retry-failed") as answered:
            await summary.get_by_role("button", name="Retry failed members").click()
        assert (await answered.value).ok
        await expect(summary.locator(".summary-head .badge")).to_have_text(
            "succeeded", timeout=WAIT_MS
        )
        await expect(overview.locator("svg.waterfall g.row.state-succeeded")).to_have_count(
            13, timeout=WAIT_MS
        )
        await shot(page, "12-family-repaired")

        # 3. 2,000 children: one row per level and type, and the page stays quick.
        big = await client.enqueue(step("big", children=[step(f"c{i}") for i in range(BIG)]))
        assert (await client.wait(big.id, timeout=60)).state is conveyor.JobState.SUCCEEDED
        await page.goto(f"{base}/jobs/{big.id}")
        await expect(overview.locator("h2")).to_contain_text(f"{BIG + 1:,} members")
        await expect(overview).to_contain_text("one row per level and type")
        await expect(overview.locator("svg.waterfall g.row")).to_have_count(2)
        await expect(overview.locator("svg.waterfall")).to_contain_text(
            f"Step \N{MULTIPLICATION SIGN} {BIG:,}"
        )
        await shot(page, "13-family-of-2000")
        await overview.screenshot(path=str(screenshots / "14-family-of-2000-overview.png"))

        assert errors == []
        assert server_errors == []


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()
