"""`provision -e`: a variable that says how jinad-fab reaches a daemon is refused as an extra var
(every other command reads it from the inventory alone, so the daemon and its clients would disagree)."""

import pytest
from click.testing import CliRunner

from jinad_fab.cli.main import cli
from jinad_fab.deploy.inventory import CLIENT_VARS, Inventory


def _inventory_folder(tmp_path):
    # loopback, a port nothing listens on: a run that went ahead would fail at once, contacting nobody
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    return tmp_path


@pytest.mark.parametrize("pair", ["jinad_tls=false", "jinad_port=8100", "jinad_scheme=http"])
def test_an_extra_var_the_clients_read_from_the_inventory_is_refused_before_anything_runs(tmp_path, pair):
    inv = _inventory_folder(tmp_path)
    result = CliRunner().invoke(cli, ["provision", "deploy", "-i", str(inv / "hosts.yml"), "-e", pair])
    assert result.exit_code == 1, result.output  # a usage error (see cli/exits.py)
    key = pair.partition("=")[0]
    assert f"Set {key} in the inventory" in result.output and "-e/--extra-var" in result.output
    # refused before the lock, the fleet CA or a playbook: nothing was made next to the inventory
    assert sorted(p.name for p in inv.iterdir()) == ["hosts.yml"]


def test_tls_turned_off_in_the_inventory_is_http_everywhere_even_with_a_certificate_issued_before(tmp_path):
    from jinad_fab.deploy import pki

    hosts = {"h1": {"ansible_host": "127.0.0.1"}}  # never contacted: only addresses are computed
    data = {"_meta": {"hostvars": hosts}, "all": {"hosts": ["h1"]}}
    inv = Inventory.from_ansible_json(data, source=tmp_path / "hosts.yml")
    pki.ensure_fleet_certificates(inv, [inv["h1"]])  # an earlier deploy with TLS
    assert Inventory.from_ansible_json(data, source=tmp_path / "hosts.yml")["h1"].daemon_address.scheme == "https"
    hosts["h1"]["jinad_tls"] = "false"  # what the refusal above asks for
    off = Inventory.from_ansible_json(data, source=tmp_path / "hosts.yml")
    assert off["h1"].daemon_address.scheme == "http" and off.ca_file_for(off["h1"]) is None
    assert "jinad_tls" in CLIENT_VARS
