"""The fleet's certificate authority: made once next to the inventory, one certificate per host.

``jinad-fab provision deploy`` calls :func:`ensure_fleet_certificates` before the playbook runs.
The first time it creates a CA (an ECDSA P-256 key and a self-signed certificate) in
``<inventory dir>/credentials/tls/``; every run then makes sure each host it deploys holds a
certificate from that CA whose subject alternative names are the host's inventory name and its
address, and issues a new one when that is no longer so (the address changed, the CA changed,
fewer than :data:`RENEW_BEFORE` days left). The ``jinad`` role copies ``hosts/<name>.pem`` and
``hosts/<name>-key.pem`` to the host, and clients check the daemon against ``ca.pem``.

Private keys are written 0600 (the folder 0700) and never overwritten in place: a new file is
written beside and renamed over the old one, so a reader sees the old pair or the new one.

Layout::

    credentials/tls/ca.pem              the CA certificate (what clients trust: jinad_ca_file)
    credentials/tls/ca-key.pem          the CA's private key (0600; keep it off the hosts)
    credentials/tls/hosts/<name>.pem    a host's certificate (the CA's appended: a full chain)
    credentials/tls/hosts/<name>-key.pem  its private key (0600)
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pathlib
import secrets
from collections.abc import Iterable

from ..errors import BadConfig

TLS_DIR = pathlib.Path("credentials") / "tls"
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CA_DAYS = 3650
HOST_DAYS = 397
RENEW_BEFORE = 30
"""Days of validity left under which a host's certificate is issued again."""


def tls_dir(inventory_dir: pathlib.Path) -> pathlib.Path:
    return inventory_dir / TLS_DIR


def host_cert_path(directory: pathlib.Path, name: str) -> pathlib.Path:
    return directory / "hosts" / f"{_safe_name(name)}.pem"


def host_key_path(directory: pathlib.Path, name: str) -> pathlib.Path:
    return directory / "hosts" / f"{_safe_name(name)}-key.pem"


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise BadConfig(f"host name {name!r} cannot name a certificate file")
    return name


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: pathlib.Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically, created with ``mode`` (never readable by others on the way)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)  # whatever the umask did
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def san_entries(names: Iterable[str]) -> list:
    """``x509`` subject alternative names: an IP address entry for an address, a DNS name otherwise."""
    from cryptography import x509

    out: list = []
    for raw in dict.fromkeys(n.strip().strip("[]") for n in names if n and n.strip()):
        try:
            entry = x509.IPAddress(ipaddress.ip_address(raw.split("%", 1)[0]))
        except ValueError:
            entry = x509.DNSName(raw.lower().rstrip("."))
        if entry not in out:
            out.append(entry)
    return out


@dataclasses.dataclass(frozen=True)
class HostCertificate:
    """Where one host's certificate and key are, and whether this run issued them."""

    name: str
    cert: pathlib.Path
    key: pathlib.Path
    issued: bool
    reason: str = ""


class FleetCA:
    """A CA kept as two PEM files in ``directory``; see the module docstring."""

    def __init__(self, directory: pathlib.Path, cert, key):
        self.directory = directory
        self.cert = cert
        self.key = key

    @property
    def cert_path(self) -> pathlib.Path:
        return self.directory / CA_CERT

    @property
    def key_path(self) -> pathlib.Path:
        return self.directory / CA_KEY

    # ---- creation and loading ------------------------------------------------------------------

    @classmethod
    def ensure(cls, directory: pathlib.Path, *, common_name: str = "jinad-fab fleet CA") -> tuple[FleetCA, bool]:
        """The CA in ``directory``, created when there is none; and whether it was created now."""
        if (directory / CA_CERT).exists() or (directory / CA_KEY).exists():
            return cls.load(directory), False
        return cls.create(directory, common_name=common_name), True

    @classmethod
    def create(cls, directory: pathlib.Path, *, common_name: str = "jinad-fab fleet CA",
               days: int = CA_DAYS) -> FleetCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "jinad-fab")])
        now = _now()
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256())
        )
        # the key first: a certificate without its key would make the next run refuse the folder
        _write_private(directory / CA_KEY, key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
        _write_private(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return cls(directory, cert, key)

    @classmethod
    def load(cls, directory: pathlib.Path) -> FleetCA:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        cert_path, key_path = directory / CA_CERT, directory / CA_KEY
        for path in (cert_path, key_path):
            if not path.is_file():
                raise BadConfig(f"the fleet CA in {directory} is incomplete: {path.name} is missing (restore it, "
                                f"or move the folder away to make a new CA and re-deploy every host)")
        mode = key_path.stat().st_mode & 0o077
        if mode:
            raise BadConfig(f"{key_path} is readable by other users (mode {key_path.stat().st_mode & 0o777:04o}); "
                            f"run chmod 600 on it")
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise BadConfig(f"the fleet CA in {directory} cannot be read: {exc}") from exc
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            raise BadConfig(f"{CA_KEY} in {directory} is not the key of {CA_CERT}")
        return cls(directory, cert, key)

    # ---- host certificates ---------------------------------------------------------------------

    def issue(self, names: Iterable[str], *, days: int = HOST_DAYS,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> tuple[bytes, bytes]:
        """A new key and a certificate for ``names`` (the first is the subject's common name):
        ``(certificate chain PEM, private key PEM)``."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        names = [n for n in names if n]
        sans = san_entries(names)
        if not sans:
            raise BadConfig("a certificate needs at least one name or address")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        start = not_before or now - datetime.timedelta(minutes=5)
        end = not_after or now + datetime.timedelta(days=days)
        ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return chain, key_pem

    def why_reissue(self, cert_path: pathlib.Path, key_path: pathlib.Path, names: Iterable[str]) -> str:
        """Why the certificate at ``cert_path`` no longer serves ``names`` ('' when it still does)."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization

        if not cert_path.is_file() or not key_path.is_file():
            return "none issued yet"
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError):
            return "the files cannot be read"
        if cert.public_key().public_numbers() != key.public_key().public_numbers():
            return "the key does not match the certificate"
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return "another CA issued it"
        try:
            have = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            have = set()
        if have != set(san_entries(names)):
            return "its names differ from the inventory's"
        if cert.not_valid_after_utc - _now() < datetime.timedelta(days=RENEW_BEFORE):
            return f"it expires in less than {RENEW_BEFORE} days"
        return ""

    def ensure_host(self, name: str, names: Iterable[str]) -> HostCertificate:
        """``name``'s certificate for ``names``, issued (again) only when the one on disk does not serve."""
        names = list(names)
        cert_path, key_path = host_cert_path(self.directory, name), host_key_path(self.directory, name)
        reason = self.why_reissue(cert_path, key_path, names)
        if not reason:
            return HostCertificate(name, cert_path, key_path, issued=False)
        chain, key_pem = self.issue(names)
        _write_private(key_path, key_pem)
        _write_private(cert_path, chain, mode=0o644)
        return HostCertificate(name, cert_path, key_path, issued=True, reason=reason)



@dataclasses.dataclass(frozen=True)
class FleetCertificates:
    """What :func:`ensure_fleet_certificates` did: the CA (and whether it was made now) and each host's
    certificate."""

    ca: pathlib.Path | None
    ca_created: bool
    hosts: tuple[HostCertificate, ...]

    @property
    def issued(self) -> list[HostCertificate]:
        return [h for h in self.hosts if h.issued]


def ensure_fleet_certificates(inventory, hosts, *, enabled: bool = True) -> FleetCertificates:
    """Before a deploy: the fleet CA next to ``inventory`` (made the first time) and a current
    certificate for each of ``hosts`` that serves TLS from it (``jinad_tls`` not false, no
    ``jinad_tls_cert_src`` of the operator's own). Nothing is made when no host needs it."""
    wanted = [h for h in hosts if enabled and h.tls and not h.own_certificate]
    if not wanted:
        return FleetCertificates(None, False, ())
    if inventory.directory is None:
        raise BadConfig("the fleet CA lives next to the inventory, and this inventory has no folder")
    ca, created = FleetCA.ensure(tls_dir(inventory.directory))
    return FleetCertificates(ca.cert_path, created, tuple(ca.ensure_host(h.name, h.certificate_names) for h in wanted))
