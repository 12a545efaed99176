"""Optional HTTP basic auth for every admin route."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """One user name and password that every admin request must present."""

    username: str
    password: str = field(repr=False)
    realm: str = "Conveyor admin"

    def accepts(self, header: str | None) -> bool:
        """True when an ``Authorization`` header carries these credentials."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        username, sep, password = decoded.partition(":")
        if not sep:
            return False
        # Both compared in constant time, so timing tells nothing about either.
        user_ok = hmac.compare_digest(username.encode(), self.username.encode())
        password_ok = hmac.compare_digest(password.encode(), self.password.encode())
        return user_ok and password_ok

    def guard(self, connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
        """A Litestar guard: refuse with 401 and a basic-auth challenge."""
        if not self.accepts(connection.headers.get("authorization")):
            raise NotAuthorizedException(
                "sign in to the Conveyor admin",
                headers={"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'},
            )
