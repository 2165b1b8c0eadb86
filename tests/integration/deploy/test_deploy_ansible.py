"""The shipped Ansible content: lint at the production profile, syntax, inventories."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

from jinad_fab.deploy.inventory import Inventory, shipped_inventory
from jinad_fab.deploy.playbooks import PLAYBOOKS, playbook_path
from jinad_fab.templating import assets_dir

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_ansible_lint_production_profile_passes() -> None:
    lint = shutil.which("ansible-lint")
    if lint is None:
        pytest.fail("ansible-lint is part of the dev extra and must be installed")
    proc = subprocess.run([lint, "--offline", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


@pytest.mark.parametrize("inventory", ["local", "example"])
def test_playbooks_pass_syntax_check_from_the_shipped_assets(inventory: str) -> None:
    # one ansible-playbook run checks every shipped playbook (it fails if any one does, naming it):
    # the same proof as a run per playbook, without paying Ansible's start-up six times
    with assets_dir() as root:
        proc = subprocess.run(
            ["ansible-playbook", "--syntax-check", "-i", str(shipped_inventory(root, inventory)),
             *(str(playbook_path(root, playbook)) for playbook in PLAYBOOKS)],
            capture_output=True, text=True, timeout=120,
            env={"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "PATH": "/usr/bin:/bin:" + str(pathlib.Path(
                shutil.which("ansible-playbook")).parent)},
        )
    assert proc.returncode == 0, proc.stderr
    checked = [line for line in proc.stdout.splitlines() if line.startswith("playbook: ")]
    assert checked == [f"playbook: {root / 'playbooks' / playbook}.yml" for playbook in PLAYBOOKS], proc.stdout


def test_example_inventory_has_gpu_and_cpu_groups_with_gpu_counts() -> None:
    with assets_dir() as root:
        inv = Inventory.load(shipped_inventory(root, "example"))
    assert [h.name for h in inv.group("gpu")] == ["gpu-1", "gpu-2"]
    assert [h.name for h in inv.group("cpu")] == ["cpu-1", "cpu-2", "cpu-3"]
    assert [h.gpus for h in inv.select("all")] == [2, 1, 0, 0, 0]
    assert inv["gpu-1"].daemon_url == "http://203.0.113.11:8000"


def test_local_inventory_is_this_machine_without_ssh() -> None:
    with assets_dir() as root:
        inv = Inventory.load(shipped_inventory(root, "local"))
    (host,) = inv.select()
    assert (host.name, host.connection, host.daemon_url) == ("localhost", "local", "http://127.0.0.1:8000")


@pytest.fixture(scope="module")
def example_inventory():
    """The shipped example inventory as jinad-fab reads it (Ansible parses it once for every pattern
    below), and what Ansible needs to list hosts from the same file."""
    with assets_dir() as root:
        inventory = shipped_inventory(root, "example")
        env = {"ANSIBLE_CONFIG": str(root / "ansible.cfg"), "PATH": str(pathlib.Path(
            shutil.which("ansible-playbook")).parent) + ":/usr/bin:/bin"}
        yield Inventory.load(inventory), inventory, env


@pytest.mark.parametrize("pattern", ["gpu", "gpu[0]", "cpu[0:1]", "cpu[-1]", "~cpu-[13]", "all:!gpu-2",
                                     "cpu:&cpu-2", "cpu-3,gpu[1]", "gpu-*", "all[1:3]"])
def test_select_names_the_hosts_ansible_itself_lists(example_inventory, pattern: str) -> None:
    """`-l PATTERN` means for jinad-fab what it means for `ansible PATTERN --list-hosts` (no host is contacted)."""
    inv, inventory, env = example_inventory
    proc = subprocess.run([shutil.which("ansible") or "ansible", "-i", str(inventory), pattern, "--list-hosts"],
                          capture_output=True, text=True, timeout=120, check=True, env=env)
    listed = [line.strip() for line in proc.stdout.splitlines()[1:] if line.strip()]
    assert listed, proc.stdout
    assert [h.name for h in inv.select(pattern)] == listed
