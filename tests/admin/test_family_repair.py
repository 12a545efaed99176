"""The admin's side of rule 8 and of reading a family: repair buttons, results,
explanations, the family overview and its timeline, on every backend."""

from __future__ import annotations

import httpx
import pytest

import conveyor
from conveyor import JobState, When
from conveyor.core.storage import Storage
from tests.admin.conftest import csrf_headers
from tests.contract.driver import Driver, Kid

Client = httpx.AsyncClient
STEP_TYPE = "conveyor.examples.Step"


@pytest.fixture
def fam(storage: Storage, config: conveyor.Config) -> Driver:
    return Driver(storage, config)


async def _broken_order(fam: Driver) -> None:
    """r: a and b (b fails for good), and an heir h that b's failure cancelled."""
    await fam.enqueue("r")
    await fam.run("r", Kid("a"), Kid("b"), Kid("h", when=When.SUCCEEDED))
    await fam.run("a", result=b"\x0a\x05hello")  # Step(name="hello")
    await fam.run("b", fail=True)


async def test_retry_of_a_member_reopens_the_family_from_its_page(
    admin: Client, fam: Driver
) -> None:
    await _broken_order(fam)
    headers = await csrf_headers(admin)
    answer = await admin.post(f"/jobs/{fam.ids['b']}/retry", headers=headers)
    assert answer.status_code == 200
    assert (
        "Queued again with fresh attempts, its family re-opened; it is now queued." in answer.text
    )
    assert await fam.states("r", "b", "h") == {
        "r": JobState.WAITING,
        "b": JobState.QUEUED,
        "h": JobState.HELD,
    }


async def test_retry_failed_members_from_the_parents_page_and_the_api(
    admin: Client, fam: Driver
) -> None:
    await _broken_order(fam)
    page = await admin.get(f"/jobs/{fam.ids['r']}")
    assert "Retry failed members" in page.text
    headers = await csrf_headers(admin)
    refused = await admin.post(f"/jobs/{fam.ids['r']}/retry", headers=headers)
    assert refused.status_code == 409
    assert "retry the members that failed" in refused.text
    answer = await admin.post(f"/jobs/{fam.ids['r']}/retry-failed", headers=headers)
    assert answer.status_code == 200
    assert "Every member whose handler failed is queued again; it is now waiting." in answer.text
    await fam.run("b", fail=True)  # fails again: the API repairs it this time
    api = await admin.post(
        f"/api/jobs/{fam.ids['r']}/retry-failed",
        json={},
        headers={"Content-Type": "application/json"},
    )
    assert api.status_code == 200
    assert [j["id"] for j in api.json()] == [fam.ids["b"]]
    assert api.json()[0]["state"] == "queued"
    missing = await admin.post(
        "/api/jobs/0190c0de-0000-7000-8000-000000000000/retry-failed",
        json={},
        headers={"Content-Type": "application/json"},
    )
    assert missing.status_code == 404


async def test_bulk_retry_failed_members_of_selected_parents(admin: Client, fam: Driver) -> None:
    await _broken_order(fam)
    headers = await csrf_headers(admin)
    answer = await admin.post(
        "/bulk",
        data={"action": "retry-failed", "scope": "selected", "ids": [fam.ids["r"]]},
        headers=headers,
    )
    assert answer.status_code == 200
    assert await fam.state("b") is JobState.QUEUED


async def test_results_and_explanations_are_shown(admin: Client, fam: Driver) -> None:
    await _broken_order(fam)
    done = await admin.get(f"/api/jobs/{fam.ids['a']}")
    assert done.json()["result"] == {"name": "hello"}
    assert done.json()["result_type"] == STEP_TYPE
    page = await admin.get(f"/jobs/{fam.ids['a']}")
    assert "Result" in page.text and "hello" in page.text
    await admin.post(f"/jobs/{fam.ids['b']}/retry", headers=await csrf_headers(admin))
    waiting = await admin.get(f"/jobs/{fam.ids['r']}")
    assert "Its handler succeeded; waiting for 1 of 2 children: " in waiting.text
    explained = await admin.get(f"/api/jobs/{fam.ids['r']}/explain")
    assert explained.status_code == 200
    assert explained.json()["waiting_for"] == [fam.ids["b"]]
    assert explained.json()["state"] == "waiting"
    held = await admin.get(f"/api/jobs/{fam.ids['h']}/explain")
    assert held.json()["text"].startswith(f"Heir held until {fam.ids['r']}")


async def test_the_family_overview_counts_members_and_draws_a_timeline(
    admin: Client, fam: Driver
) -> None:
    await _broken_order(fam)
    summary = (await admin.get(f"/api/jobs/{fam.ids['r']}/family/summary")).json()
    assert summary["members"] == 4
    assert summary["complete"] is True
    assert summary["depth"] == 1
    assert summary["by_state"] == {"failed": 2, "succeeded": 1, "cancelled": 1}
    assert summary["by_type"] == {STEP_TYPE: {"failed": 2, "succeeded": 1, "cancelled": 1}}
    overview = await admin.get(f"/jobs/{fam.ids['r']}/overview")
    assert overview.status_code == 200
    text = overview.text
    assert "4 members" in text and "1 level deep" in text
    assert text.count('<g class="row ') == 4  # one row per member
    assert f'href="/jobs/{fam.ids["b"]}"' in text
    await admin.post(f"/jobs/{fam.ids['b']}/retry", headers=await csrf_headers(admin))
    reopened = (await admin.get(f"/api/jobs/{fam.ids['r']}/family/summary")).json()
    assert reopened["open"] == 3  # r waiting, b queued, h held
    assert [h["id"] for h in reopened["held_heirs"]] == [fam.ids["h"]]
    assert "runs if its family succeeds" in reopened["held_heirs"][0]["why"]


async def test_a_large_family_is_drawn_by_level_and_type(admin: Client, fam: Driver) -> None:
    await fam.enqueue("r")
    kids = [f"k{i}" for i in range(150)]
    await fam.run("r", *(Kid(k) for k in kids))
    overview = await admin.get(f"/jobs/{fam.ids['r']}/overview")
    text = overview.text
    assert "151 members" in text
    assert "one row per level and type" in text
    assert text.count('<g class="row ') == 2  # the root's row, and the 150 Steps below it
    assert "Step \N{MULTIPLICATION SIGN} 150" in text
