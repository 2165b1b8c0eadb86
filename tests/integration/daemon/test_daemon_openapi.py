"""The OpenAPI document says what the daemon really answers: errors, the token, the runtimes."""

from __future__ import annotations

import httpx

from tests.support.daemons import upload


def test_every_route_declares_its_error_statuses_and_the_token(jinad):
    with jinad.client() as c:
        spec = c.get("/openapi.json").json()
        alive = c.get("/alive").json()
        assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                declared = set(op["responses"])
                if path == "/alive":
                    assert "security" not in op and {"403", "503"} <= declared
                    continue
                assert op["security"] == [{"bearer": []}], (method, path)
                assert {"400", "401", "403", "404", "409", "413", "503"} <= declared, (method, path, declared)
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}
        (runtime,) = [p for p in spec["paths"]["/workspaces"]["post"]["parameters"] if p["name"] == "runtime"]
        assert runtime["schema"]["anyOf"][0]["enum"] == sorted(alive["runtimes"])
        # the answers the document promises are the ones given
        r = upload(c, {"a.txt": "x"}, runtime="no-such-runtime")
        assert r.status_code == 400 and "400" in spec["paths"]["/workspaces"]["post"]["responses"]
    assert httpx.get(jinad.url + "/workspaces").status_code == 401
