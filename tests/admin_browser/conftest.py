"""A real headless Chromium to look at the admin with.

Chromium is the system's (Debian's ``chromium``; ``$CONVEYOR_CHROMIUM`` overrides
the path): playwright never downloads a browser here. A missing browser fails
the tests that need it, it never skips them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium's path; missing fails the test (CI installs it in .ci/run)."""
    wanted = os.environ.get("CONVEYOR_CHROMIUM")
    candidates = [wanted] if wanted else ["chromium", "/usr/bin/chromium"]
    found = next((path for c in candidates if (path := shutil.which(c))), None)
    if found is None:
        pytest.fail(
            "the browser tests need Chromium: apt-get install chromium "
            "(or set CONVEYOR_CHROMIUM to its path)",
            pytrace=False,
        )
    return found


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
