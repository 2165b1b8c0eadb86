"""Pods on other hosts (``Flow().add(host='gpu1:8000')``), started through each host's jinad."""

from __future__ import annotations

from ..errors import BadConfig


def reject_remote(flow) -> None:
    remote = [n for n, p in flow.pods.items() if p.get("host")]
    raise BadConfig(f"Pod(s) {remote} ask for host=..., but this build runs every Pod locally; "
                    "remote Pods are not available yet")
