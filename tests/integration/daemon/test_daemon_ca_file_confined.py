"""A Flow YAML run by jinad may name a CA bundle (`ca_file`, issue 14) only inside its workspace,
like every other path: a bundle elsewhere on the host is refused before anything starts."""

from __future__ import annotations

import pytest

from tests.support.daemons import active_workspace

FLOW = """!Flow
version: '1'
with:
  ca_file: {flow_ca}
pods:
  - name: far
    host: https://127.0.0.1:9
    ca_file: {pod_ca}
"""


@pytest.mark.parametrize(("flow_ca", "pod_ca"), [
    ("/etc/ssl/certs/ca-certificates.crt", "ca.pem"),  # the Flow's: absolute, outside
    ("ca.pem", "../../../../etc/passwd"),  # a Pod's: up and out
])
def test_a_ca_file_outside_the_workspace_is_refused(jinad, flow_ca, pod_ca):
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW.format(flow_ca=flow_ca, pod_ca=pod_ca), "ca.pem": "x"})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "flow.yml"})
        assert r.status_code == 400, r.text
        assert "ca_file" in r.text and "outside" in r.text.lower()
        assert c.get("/flows").json()["items"] == []  # nothing was started
