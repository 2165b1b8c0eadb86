"""Bearer-token check, in constant time, for every route except health."""

from __future__ import annotations

import hmac

from fastapi import Request

from ..errors import Forbidden, Unauthorized


def check_token(request: Request) -> None:
    expected = request.app.state.settings.token
    if expected is None or not expected.get_secret_value():
        return
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied:
        raise Unauthorized("missing bearer token")
    if not hmac.compare_digest(supplied.strip().encode(), expected.get_secret_value().encode()):
        raise Forbidden("wrong token")
