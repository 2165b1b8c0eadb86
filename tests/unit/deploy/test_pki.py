"""The fleet CA (deploy/pki.py): made once, private files 0600, host certificates issued again only
when they stop serving; and what it implies for the inventory (https, jinad_ca_file)."""

from __future__ import annotations

import datetime
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from jinad_fab.deploy import pki
from jinad_fab.deploy.inventory import Inventory, ansible_environment
from jinad_fab.errors import BadAddress, BadConfig
from jinad_fab.remote import DaemonAddress


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sans(path) -> set:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def test_the_ca_is_made_once_with_private_files(tmp_path):
    folder = tmp_path / "credentials" / "tls"
    ca, created = pki.FleetCA.ensure(folder)
    assert created and _mode(folder) == 0o700 and _mode(ca.key_path) == 0o600
    again, created_again = pki.FleetCA.ensure(folder)
    assert not created_again and again.cert == ca.cert  # the same CA, not a new one
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_a_host_certificate_names_the_host_and_its_address(tmp_path):
    ca, _ = pki.FleetCA.ensure(tmp_path / "tls")
    got = ca.ensure_host("gpu-1", ["gpu-1", "10.9.0.11"])
    assert got.issued and _mode(got.key) == 0o600 and _mode(got.cert.parent) == 0o700
    assert _sans(got.cert) == {x509.DNSName("gpu-1"), x509.IPAddress(ipaddress.ip_address("10.9.0.11"))}
    leaf = x509.load_pem_x509_certificate(got.cert.read_bytes())
    leaf.verify_directly_issued_by(ca.cert)  # raises when another key signed it
    assert leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    chain = x509.load_pem_x509_certificates(got.cert.read_bytes())
    assert [c.subject for c in chain] == [leaf.subject, ca.cert.subject]  # the CA rides along


def test_a_host_certificate_is_issued_again_only_when_it_stops_serving(tmp_path):
    ca, _ = pki.FleetCA.ensure(tmp_path / "tls")
    first = ca.ensure_host("cpu-1", ["cpu-1", "10.9.0.21"])
    before = first.cert.read_bytes()
    assert not ca.ensure_host("cpu-1", ["cpu-1", "10.9.0.21"]).issued and first.cert.read_bytes() == before
    moved = ca.ensure_host("cpu-1", ["cpu-1", "10.9.0.22"])  # the address changed in the inventory
    assert moved.issued and "names differ" in moved.reason
    assert x509.IPAddress(ipaddress.ip_address("10.9.0.22")) in _sans(moved.cert)

    other, _ = pki.FleetCA.ensure(tmp_path / "other")
    chain, key = other.issue(["cpu-1", "10.9.0.22"])  # a certificate of another CA in its place
    moved.cert.write_bytes(chain)
    moved.key.write_bytes(key)
    replaced = ca.ensure_host("cpu-1", ["cpu-1", "10.9.0.22"])
    assert replaced.issued and "another CA" in replaced.reason

    now = datetime.datetime.now(datetime.timezone.utc)
    chain, key = ca.issue(["cpu-1", "10.9.0.22"], not_after=now + datetime.timedelta(days=3))
    replaced.cert.write_bytes(chain)
    replaced.key.write_bytes(key)
    renewed = ca.ensure_host("cpu-1", ["cpu-1", "10.9.0.22"])
    assert renewed.issued and "expires" in renewed.reason


def test_a_ca_key_others_can_read_or_a_half_ca_is_refused(tmp_path):
    ca, _ = pki.FleetCA.ensure(tmp_path / "tls")
    ca.key_path.chmod(0o644)
    with pytest.raises(BadConfig, match="chmod 600"):
        pki.FleetCA.load(tmp_path / "tls")
    ca.key_path.unlink()
    with pytest.raises(BadConfig, match="ca-key.pem is missing"):
        pki.FleetCA.ensure(tmp_path / "tls")  # never silently a new CA the hosts do not trust


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", ""])
def test_a_host_name_cannot_lead_outside_the_folder(tmp_path, name):
    ca, _ = pki.FleetCA.ensure(tmp_path / "tls")
    with pytest.raises(BadConfig):
        ca.ensure_host(name, ["10.0.0.1"])


def _inventory(tmp_path, hosts: dict) -> Inventory:
    data = {"_meta": {"hostvars": hosts}, "all": {"hosts": list(hosts)}}
    return Inventory.from_ansible_json(data, source=tmp_path / "hosts.yml")


def test_a_deployed_host_is_reached_over_https_checked_against_the_fleet_ca(tmp_path):
    hosts = {"a": {"ansible_host": "10.9.0.1"}, "b": {"ansible_host": "10.9.0.2", "jinad_tls": False},
             "own": {"ansible_host": "10.9.0.3", "jinad_tls_cert_src": "/etc/pki/own.pem"},
             "new": {"ansible_host": "10.9.0.4"}}
    inv = _inventory(tmp_path, hosts)
    assert inv["a"].daemon_address.scheme == "http" and inv.ca_file_for(inv["a"]) is None  # nothing issued yet

    made = pki.ensure_fleet_certificates(inv, [inv["a"], inv["b"], inv["own"]])
    assert made.ca_created and [h.name for h in made.hosts] == ["a"]  # b serves plain HTTP, own has its own
    inv = _inventory(tmp_path, hosts)
    assert inv["a"].daemon_address == DaemonAddress("https", "10.9.0.1", 8000)
    assert inv.ca_file_for(inv["a"]) == str(tmp_path / "credentials" / "tls" / "ca.pem")
    assert inv["b"].daemon_address.scheme == "http"
    assert inv["own"].daemon_address.scheme == "https" and inv.ca_file_for(inv["own"]) is None
    assert inv["new"].daemon_address.scheme == "http"  # not deployed with a certificate yet
    explicit = _inventory(tmp_path, {"a": {"ansible_host": "10.9.0.1", "jinad_scheme": "http"}})
    assert explicit["a"].daemon_address.scheme == "http"  # what the inventory says wins


def test_nothing_is_made_when_no_host_serves_tls(tmp_path):
    inv = _inventory(tmp_path, {"a": {"ansible_host": "10.9.0.1", "jinad_tls": "false"}})
    assert pki.ensure_fleet_certificates(inv, list(inv.hosts.values())).ca is None
    assert not (tmp_path / "credentials").exists()


def test_ansible_skips_the_credentials_folder_of_an_inventory_folder():
    assert ansible_environment({})["ANSIBLE_INVENTORY_IGNORE_REGEX"] == "^credentials$"
    assert ansible_environment({"ANSIBLE_INVENTORY_IGNORE_REGEX": "^old$"})[
        "ANSIBLE_INVENTORY_IGNORE_REGEX"] == "^old$,^credentials$"


def test_tls_picks_the_scheme_of_an_address_written_without_one():
    assert DaemonAddress.parse("gpu1:8443", tls=True).url == "https://gpu1:8443"
    assert DaemonAddress.parse("gpu1", tls=False).scheme == "http"
    assert DaemonAddress.parse("https://gpu1").scheme == "https"
    for address, tls in (("http://gpu1", True), ("https://gpu1", False)):
        with pytest.raises(BadAddress, match="contradicts"):
            DaemonAddress.parse(address, tls=tls)
