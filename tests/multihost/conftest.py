"""A fleet of SSH hosts for the multihost tier: containers from `jinad-fab/sshd-test`
(.ci/setup.d/30-multihost.sh) on a private, internal Docker network this fixture creates (the
hosts have no way out: no PyPI, no registry), each with its own filesystem and address, root
reachable with a key generated here. Containers and the network are removed even on failure."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import yaml

IMAGE = "jinad-fab/sshd-test"
LABEL = "jinad-fab.test=multihost"


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


@dataclasses.dataclass
class TestHost:
    name: str
    container: str
    address: str
    groups: tuple[str, ...]
    gpus: int = 0


@dataclasses.dataclass
class Fleet:
    hosts: list[TestHost]
    key: pathlib.Path
    network: str
    inventory: pathlib.Path

    def host(self, name: str) -> TestHost:
        return next(h for h in self.hosts if h.name == name)


def _wait_ssh(address: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 22), timeout=2) as s:
                s.settimeout(3)
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"sshd on {address} did not answer within {timeout:g}s")


def host_vars(key: pathlib.Path) -> dict:
    """The inventory vars every test host shares: root over SSH with the test's key (host keys are
    fresh on each start, so not checked), the image's python3, and jinad on every address."""
    return {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        "jinad_fab_become": False,
        "jinad_host": "0.0.0.0",
        "jinad_address": "{{ ansible_host }}",
    }


def write_inventory(path: pathlib.Path, hosts: list[TestHost], key: pathlib.Path) -> None:
    groups: dict[str, dict] = {}
    for h in hosts:
        for g in h.groups:
            groups.setdefault(g, {"hosts": {}})["hosts"][h.name] = {"ansible_host": h.address, "jinad_gpus": h.gpus}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"all": {
        "vars": {
            **host_vars(key),
            "jinad_service_manager": "process",
            "jinad_runtimes": ["process"],
            "jinad_wait_timeout": 120,
            "jinad_logrotate_install": False,  # an internal network: no package mirror (the rule is installed)
            "nvidia_toolkit_enabled": False,  # no GPU here: the gpu group is about placement
        },
        "children": groups,
    }}))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True,
                                                        timeout=30).returncode != 0:
        pytest.fail("the multihost tier needs a Docker engine (.ci/setup.d/20-docker.sh starts one)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing (.ci/setup.d/30-multihost.sh builds it)")
    tmp = tmp_path_factory.mktemp("fleet")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    tag = uuid.uuid4().hex[:8]
    network = f"jfab-mh-{tag}"
    specs = [("gpu-1", ("gpu",), 1), ("cpu-1", ("cpu",), 0), ("cpu-2", ("cpu",), 0)]
    containers: list[str] = []
    docker("network", "create", "--internal", "--label", LABEL, network)
    try:
        hosts = []
        for name, groups, gpus in specs:
            container = f"{network}-{name}"
            docker("run", "-d", "--name", container, "--hostname", name, "--network", network, "--label", LABEL,
                   "--memory", "2g", "-e", f"AUTHORIZED_KEY={(tmp / 'id_ed25519.pub').read_text().strip()}", IMAGE)
            containers.append(container)
            address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
            hosts.append(TestHost(name, container, address, groups, gpus))
        for h in hosts:
            _wait_ssh(h.address)
        inventory = tmp / "inventory" / "hosts.yml"
        write_inventory(inventory, hosts, key)
        yield Fleet(hosts=hosts, key=key, network=network, inventory=inventory)
    finally:
        for c in containers:
            docker("rm", "-f", "-v", c, check=False)
        docker("network", "rm", network, check=False)
