"""Every role of deploy.yml on a host where systemd is PID 1, with the real ansible-playbook run
by the project's playbook runner over SSH: `docker_engine` installs Debian's docker.io and starts
it under systemd, `nvidia_toolkit` adds its (signed) repository and installs its package, and
`jinad` runs the daemon as a systemd unit that may use that engine. A second run changes nothing,
and neither does a `--check` run, whose read-only probes still look at the host.

The test host (`jinad-fab/systemd-test`, .ci/setup.d/35-systemd-host.sh) sits on an internal
network with no way out. Its apt mirror is a stand-in served by this test on that network: the
Debian packages the roles install (cached by the setup script) and, in place of NVIDIA's
repository, a package built here that carries the toolkit's name and an `nvidia-ctk` limited to
the one command the role runs (`runtime configure --runtime=docker`, which registers the runtime
in daemon.json). No GPU is needed: the role's steps are the same without one.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import yaml
from click.testing import CliRunner

from jinad_fab.cli.main import _register, cli
from jinad_fab.deploy.playbooks import TaskEvent, run_playbook

from .aptrepo import RepoServer, SigningKey, build_deb, write_flat_repo
from .conftest import LABEL, _wait_ssh, docker, host_vars

pytestmark = pytest.mark.timeout(1800)

IMAGE = os.environ.get("JINAD_FAB_SYSTEMD_IMAGE", "jinad-fab/systemd-test")
# read at import, before the suite points JINAD_FAB_CACHE_DIR at a temporary folder for each test
DEBS = pathlib.Path(os.environ.get("JINAD_FAB_CACHE_DIR", "/var/cache/jinad-fab")) / "debs-bookworm"
TOOLKIT_VERSION = "1.17.0-1~jinadtest"

# What NVIDIA's nvidia-ctk does for `runtime configure --runtime=docker`: add the nvidia runtime
# to dockerd's daemon.json, keeping what is there. Nothing else is implemented.
NVIDIA_CTK = textwrap.dedent('''\
    #!/usr/bin/python3
    """Test stand-in for nvidia-ctk: only `runtime configure --runtime=docker [--config FILE]`."""
    import argparse, json, os, sys
    p = argparse.ArgumentParser(prog="nvidia-ctk")
    p.add_argument("group", choices=["runtime"])
    p.add_argument("action", choices=["configure"])
    p.add_argument("--runtime", required=True, choices=["docker"])
    p.add_argument("--config", default="/etc/docker/daemon.json")
    a = p.parse_args()
    try:
        with open(a.config) as f:
            cfg = json.load(f)
    except FileNotFoundError:
        cfg = {}
    cfg.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    os.makedirs(os.path.dirname(a.config), exist_ok=True)
    with open(a.config, "w") as f:
        json.dump(cfg, f, indent=4)
        f.write("\\n")
    print(f"Wrote updated config to {a.config}", file=sys.stderr)
''')


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output.split("\nError:")[0], result.output


def sh(container: str, script: str, check: bool = True) -> str:
    return docker("exec", container, "sh", "-c", script, check=check)


@pytest.fixture(scope="module")
def systemd_host(tmp_path_factory):
    """One systemd test host on its own internal network, the stand-in mirrors served on that
    network's gateway, and an inventory putting the host in `gpu` with the docker runtime."""
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True,
                                                        timeout=30).returncode != 0:
        pytest.fail("the roles test needs a Docker engine (.ci/setup.d/20-docker.sh starts one)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, timeout=30).returncode != 0:
        pytest.fail(f"image {IMAGE} is missing (.ci/setup.d/35-systemd-host.sh builds it)")
    if not (DEBS / ".complete").is_file():
        pytest.fail(f"the role packages' cache {DEBS} is missing (.ci/setup.d/35-systemd-host.sh fills it)")
    tmp = tmp_path_factory.mktemp("systemd-host")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    tag = uuid.uuid4().hex[:8]
    network = f"jfab-sd-{tag}"
    container = f"{network}-gpu"
    signing = SigningKey(tmp / "gnupg")
    server = None
    docker("network", "create", "--internal", "--label", LABEL, network)
    try:
        gateway = docker("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}", network)
        # systemd as PID 1 and dockerd inside it: what --privileged gives, less the capabilities this
        # machine's own bounding set may lack (docker refuses to add those)
        docker("run", "-d", "--name", container, "--hostname", "gpu-sd", "--network", network, "--label", LABEL,
               "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
               "--security-opt", "apparmor=unconfined", "--cgroupns", "private", "--tmpfs", "/run",
               "--tmpfs", "/run/lock", "-v", "/var/lib/docker", "--memory", "3g", IMAGE)
        address = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
        arch = sh(container, "dpkg --print-architecture")

        # the stand-in mirrors: Debian's packages, and the NVIDIA toolkit's repository laid out as NVIDIA's
        www = tmp / "www"
        write_flat_repo(www / "debian", DEBS.glob("*.deb"), signing, origin="jinad-fab test mirror")
        toolkit = build_deb(tmp, tmp / "built", package="nvidia-container-toolkit", version=TOOLKIT_VERSION,
                            description="NVIDIA container toolkit (test stand-in)\n"
                                        "Carries only nvidia-ctk runtime configure --runtime=docker.",
                            files={"/usr/bin/nvidia-ctk": (NVIDIA_CTK, 0o755)})
        write_flat_repo(www / "nvidia" / "stable" / "deb" / arch, [toolkit], signing, origin="jinad-fab test nvidia")
        (www / "nvidia" / "gpgkey").write_bytes(signing.public_armored())
        server = RepoServer(www, gateway)

        # the host's own mirror (its image has no sources: there is nothing it could reach)
        armored = signing.public_armored().decode()
        sh(container, f"mkdir -p /etc/apt/keyrings && cat > /etc/apt/keyrings/test-mirror.asc <<'EOF'\n{armored}EOF")
        sh(container, "cat > /etc/apt/sources.list.d/test-mirror.sources <<'EOF'\n"
                      f"Types: deb\nURIs: {server.url}/debian/\nSuites: /\n"
                      "Signed-By: /etc/apt/keyrings/test-mirror.asc\nEOF")
        # the image was made recently, so its (emptied) lists folder would look fresh to the
        # roles' cache_valid_time and apt would never read the new source
        sh(container, "touch -d 2000-01-01 /var/lib/apt/lists")
        pub = (tmp / "id_ed25519.pub").read_text().strip()
        sh(container, f"mkdir -p -m 0700 /root/.ssh && echo '{pub}' > /root/.ssh/authorized_keys "
                      "&& chmod 0600 /root/.ssh/authorized_keys")
        _wait_ssh(address)
        sh(container, "systemctl is-system-running --wait >/dev/null || true")

        inventory = tmp / "inventory" / "hosts.yml"
        inventory.parent.mkdir()
        inventory.write_text(yaml.safe_dump({"all": {
            "vars": {
                **host_vars(key),
                "jinad_runtimes": ["process", "docker"],
                "jinad_wait_timeout": 120,
                "nvidia_toolkit_repo_url": f"{server.url}/nvidia/stable/deb/$(ARCH)",
                "nvidia_toolkit_repo_key_url": f"{server.url}/nvidia/gpgkey",
            },
            "children": {"gpu": {"hosts": {"gpu-sd": {"ansible_host": address, "jinad_gpus": 1}}}},
        }}))
        yield {"container": container, "address": address, "inventory": inventory, "server": server}
    finally:
        docker("rm", "-f", "-v", container, check=False)
        docker("network", "rm", network, check=False)
        if server is not None:
            server.close()
        signing.close()


@pytest.fixture(scope="module")
def fresh_check(systemd_host, wheels):
    """`provision deploy --check` on the host before anything was installed, and what the host had after it."""
    _register()
    c = systemd_host["container"]
    code, body, out = run("provision", "deploy", "-i", str(systemd_host["inventory"]), "--wheelhouse", str(wheels),
                          "--check", "--json")
    after = {
        "packages": sh(c, "dpkg-query -W -f '${Package} ' docker.io nvidia-container-toolkit logrotate 2>/dev/null",
                       check=False),
        "files": sh(c, "ls -d /etc/apt/sources.list.d/nvidia-container-toolkit.sources /etc/docker /opt/jinad "
                       "/var/lib/jinad /etc/systemd/system/jinad.service 2>/dev/null", check=False),
    }
    return code, out, body, after


@pytest.fixture(scope="module")
def deployed(systemd_host, wheels, fresh_check):
    code, body, out = run("provision", "deploy", "-i", str(systemd_host["inventory"]), "--wheelhouse", str(wheels),
                          "--json")
    assert code == 0, out[-8000:]
    return json.loads(body)


def test_a_check_run_on_the_fresh_host_lists_what_would_change_and_changes_nothing(fresh_check) -> None:
    code, out, body, after = fresh_check
    assert code == 0, out[-8000:]
    recap = json.loads(body)["hosts"]["gpu-sd"]
    assert recap["succeeded"], recap
    would = {c["task"] for c in recap["changes"]}
    for task in ("Say that the Docker engine would be installed (check mode)",
                 "Add NVIDIA's container toolkit repository",
                 "Say that the NVIDIA container toolkit would be installed (check mode)",
                 "Install the systemd unit", "Install jinad-fab into the release's virtualenv"):
        assert task in would, (task, sorted(would))
    assert after == {"packages": "", "files": ""}  # nothing installed, nothing written


def _unit(container: str, unit: str, prop: str) -> str:
    return sh(container, f"systemctl show {unit} --property {prop} --value")


def test_deploy_installs_every_role_under_systemd(systemd_host, deployed) -> None:
    c = systemd_host["container"]
    recap = deployed["hosts"]["gpu-sd"]
    assert recap["succeeded"] and recap["changed"] > 0, recap
    assert sh(c, "cat /proc/1/comm") == "systemd"

    # docker_engine: Debian's package from the mirror, started and enabled by systemd
    assert sh(c, "dpkg-query -W -f '${Status}' docker.io") == "install ok installed"
    assert _unit(c, "docker", "ActiveState") == "active" and _unit(c, "docker", "UnitFileState") == "enabled"
    served = systemd_host["server"].served
    assert any(p.startswith("/debian/docker.io_") for p in served), served

    # nvidia_toolkit: its repository, signed by the key at the key URL, then its package and runtime
    sources = sh(c, "cat /etc/apt/sources.list.d/nvidia-container-toolkit.sources")
    assert f"{systemd_host['server'].url}/nvidia/stable/deb/$(ARCH)" in sources
    assert "/nvidia/gpgkey" in served and any(p.endswith("/nvidia-container-toolkit_" + TOOLKIT_VERSION
                                                          + "_all.deb") for p in served), served
    assert sh(c, "dpkg-query -W -f '${Version}' nvidia-container-toolkit") == TOOLKIT_VERSION
    assert "nvidia" in json.loads(sh(c, "cat /etc/docker/daemon.json"))["runtimes"]
    # the handler restarted dockerd, which now offers the runtime
    assert "nvidia" in json.loads(sh(c, "docker info --format '{{json .Runtimes}}'"))

    # jinad: a systemd unit, running as its own account, able to use the engine (docker group)
    assert _unit(c, "jinad", "ActiveState") == "active" and _unit(c, "jinad", "UnitFileState") == "enabled"
    pid = _unit(c, "jinad", "MainPID")
    assert sh(c, f"ps -o user= -p {pid}") == "jinad"
    assert sh(c, "test -x /opt/jinad/jinad-ctl && echo yes || echo no") == "no"  # not the no-systemd path
    # asked the way an operator asks (scheme, CA and token from the inventory)
    code, body, out = run("hosts", "-i", str(systemd_host["inventory"]), "--json")
    assert code == 0, out
    (row,) = json.loads(body)
    assert "docker" in row["value"]["alive"]["runtimes"], row
    assert "/var/lib/jinad/logs/jinad.log {" in sh(c, "cat /etc/logrotate.d/jinad")
    assert any(p.startswith("/debian/logrotate_") for p in served), served


def test_a_second_deploy_changes_nothing(systemd_host, deployed, wheels) -> None:
    code, body, out = run("provision", "deploy", "-i", str(systemd_host["inventory"]), "--wheelhouse", str(wheels),
                          "--json")
    assert code == 0, out[-8000:]
    recap = json.loads(body)["hosts"]["gpu-sd"]
    assert recap["succeeded"] and recap["changed"] == 0, recap["changes"]


def test_check_mode_changes_nothing_and_still_probes_the_host(systemd_host, deployed, wheels) -> None:
    events: list[TaskEvent] = []
    pid = _unit(systemd_host["container"], "jinad", "MainPID")
    result = run_playbook("deploy", systemd_host["inventory"], check=True, on_event=events.append,
                          extravars={"jinad_install_mode": "wheelhouse", "jinad_wheelhouse_src": str(wheels)},
                          env={"PATH": f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"})
    recap = result.hosts["gpu-sd"]
    assert recap.ok and recap.changed == 0, (recap.message, recap.changes)
    status = {e.task: e.status for e in events}
    # the read-only probes ran in check mode, so what the run reports is about this host
    for probe in ("Count running containers (a restart of dockerd would stop them)",
                  "Check whether dockerd answers", "Read dockerd's daemon.json",
                  "Count running containers that hold GPUs"):
        assert status.get(probe) == "ok", (probe, status.get(probe))
    assert status["Register the nvidia runtime with Docker"] == "skipped"  # registered already
    assert _unit(systemd_host["container"], "jinad", "MainPID") == pid  # not restarted


def test_systemd_restarts_a_daemon_that_dies(systemd_host, deployed) -> None:
    c = systemd_host["container"]
    before = _unit(c, "jinad", "MainPID")
    sh(c, f"kill -KILL {before}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _unit(c, "jinad", "MainPID")
        if now not in ("0", before) and _unit(c, "jinad", "ActiveState") == "active":
            try:
                with socket.create_connection((systemd_host["address"], 8000), timeout=2):
                    break
            except OSError:
                pass
        time.sleep(1)
    else:
        pytest.fail(f"systemd did not bring jinad back: {sh(c, 'systemctl status jinad --no-pager', check=False)}")
    assert int(_unit(c, "jinad", "NRestarts")) >= 1


def test_teardown_stops_and_removes_the_unit(systemd_host, deployed) -> None:
    c = systemd_host["container"]
    code, body, out = run("provision", "teardown", "-i", str(systemd_host["inventory"]), "--json")
    assert code == 0, out[-8000:]
    assert json.loads(body)["hosts"]["gpu-sd"]["succeeded"]
    assert sh(c, "test -e /etc/systemd/system/jinad.service && echo yes || echo no") == "no"
    assert _unit(c, "jinad", "ActiveState") == "inactive"
    assert docker("exec", c, "pgrep", "-fc", "venv/bin/jinad", check=False) == "0"  # not via sh: it would match
    assert sh(c, "test -e /opt/jinad && echo yes || echo no") == "no"
    assert _unit(c, "docker", "ActiveState") == "active"  # the engine stays: teardown is about jinad
