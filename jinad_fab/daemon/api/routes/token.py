"""PUT /token, DELETE /token/previous: rotate the daemon's bearer token without a restart.

`jinad-fab provision rotate-token` calls them in two steps, so no client is refused on the way:
``PUT /token`` makes the new token the one required (and writes it to the token file the daemon
reads at start) while the replaced one is still accepted; once every client holds the new one,
``DELETE /token/previous`` stops accepting the old. Running Flows, Pods and Peas are not touched.
Only a request carrying the current token may rotate it: a leaked old token cannot take the
daemon over during a rotation.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response

from ....errors import Conflict, Forbidden
from ....schemas import TokenRotate, TokenRotated
from ....tokens import write_token_file
from ...auth import TOKEN_SCOPE_KEY
from ..deps import SettingsDep

router = APIRouter(prefix="/token", tags=["token"])
log = logging.getLogger("jinad")


@router.put("", response_model=TokenRotated)
async def rotate(body: TokenRotate, request: Request, settings: SettingsDep) -> TokenRotated:
    if request.scope.get(TOKEN_SCOPE_KEY) != "current":
        raise Forbidden("only the current token may rotate the token")
    path = settings.token_path()
    if path is None:
        raise Conflict("this daemon's token comes from JINAD_TOKEN, which it cannot change: set the new "
                       "token there and restart it, or start it with --token-file")
    state = request.app.state
    if body.token == state.token:
        return TokenRotated(persisted=True, previous_accepted=state.previous_token is not None)
    await asyncio.to_thread(write_token_file, path, body.token)  # a restarted daemon keeps the new one
    state.previous_token, state.token = state.token, body.token
    log.info("token rotated; the previous one is accepted until DELETE /token/previous")
    return TokenRotated(persisted=True, previous_accepted=True)


@router.delete("/previous", status_code=204)
async def forget_previous(request: Request) -> Response:
    if request.scope.get(TOKEN_SCOPE_KEY) != "current":
        raise Forbidden("only the current token may end a rotation")
    if request.app.state.previous_token is not None:
        request.app.state.previous_token = None
        log.info("token rotation finished; the previous token is refused from now on")
    return Response(status_code=204)
