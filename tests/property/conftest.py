"""Fixtures of the property suite.

``namespaces`` is parametrised over ``tests.conftest.BACKENDS``: adding a
backend there (with its ``<name>_url`` fixture) adds it here too; a backend
whose namespaces need more than the cleanup in ``Namespaces.drop`` gets a
branch there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import backend_params

from .namespaces import Namespaces


@pytest.fixture(params=backend_params())
def namespaces(request: pytest.FixtureRequest) -> Iterator[Namespaces]:
    url: str = request.getfixturevalue(f"{request.param}_url")
    made = Namespaces(url)
    yield made
    made.drop_all()
