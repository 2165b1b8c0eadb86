"""Signed apt repositories served over HTTP on the test network: what a test host without a way
out installs from. A flat repository (``Suites: /``) per folder: ``Packages`` indexed from the
.debs' own control fields, ``Release`` with its hashes, ``InRelease`` clear-signed with a key
made for the test (apt on the host verifies it like any mirror's)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import pathlib
import posixpath
import shutil
import subprocess
import threading
import urllib.parse
from collections.abc import Iterable


class SigningKey:
    """A throw-away OpenPGP key in its own GnuPG home."""

    def __init__(self, home: pathlib.Path, uid: str = "jinad-fab test repository") -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.uid = uid
        self._gpg("--quick-generate-key", uid, "ed25519", "sign", "never")

    def _gpg(self, *args: str, stdin: bytes | None = None) -> bytes:
        proc = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
                               "--passphrase", "", *args], input=stdin, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gpg {args[0]} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def public_armored(self) -> bytes:
        return self._gpg("--armor", "--export", self.uid)

    def clearsign(self, text: bytes) -> bytes:
        return self._gpg("--clearsign", "--digest-algo", "SHA256", stdin=text)

    def close(self) -> None:
        # the agent this home started would outlive the test otherwise
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, timeout=30,
                       check=False)


def build_deb(root: pathlib.Path, out: pathlib.Path, *, package: str, version: str, description: str,
              files: dict[str, tuple[str, int]]) -> pathlib.Path:
    """A binary package from ``files`` (path in the package -> (content, mode)), built with dpkg-deb."""
    stage = root / f"{package}-stage"
    (stage / "DEBIAN").mkdir(parents=True)
    for rel, (content, mode) in files.items():
        dest = stage / rel.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
        dest.chmod(mode)
    summary, _, rest = description.partition("\n")
    body = "".join(f" {line or '.'}\n" for line in rest.splitlines())
    (stage / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: jinad-fab tests <tests@localhost>\n"
        f"Section: utils\nPriority: optional\nDescription: {summary}\n{body}")
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(stage), str(deb)], check=True,
                   capture_output=True, timeout=120)
    shutil.rmtree(stage)
    return deb


def _digests(data: bytes) -> dict[str, str]:
    return {"MD5Sum": hashlib.md5(data).hexdigest(), "SHA256": hashlib.sha256(data).hexdigest()}  # noqa: S324


def write_flat_repo(folder: pathlib.Path, debs: Iterable[pathlib.Path], key: SigningKey, *, origin: str) -> None:
    """Copy ``debs`` into ``folder`` and index and sign it as a flat repository."""
    folder.mkdir(parents=True, exist_ok=True)
    stanzas = []
    for deb in sorted(debs):
        if deb.parent != folder:
            shutil.copy2(deb, folder / deb.name)
        data = (folder / deb.name).read_bytes()
        control = subprocess.run(["dpkg-deb", "--field", str(folder / deb.name)], check=True, capture_output=True,
                                 text=True, timeout=60).stdout.rstrip("\n")
        sums = _digests(data)
        stanzas.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                       f"MD5sum: {sums['MD5Sum']}\nSHA256: {sums['SHA256']}\n")
    packages = "\n".join(stanzas).encode()
    (folder / "Packages").write_bytes(packages)
    sums = _digests(packages)
    release = (f"Origin: {origin}\nLabel: {origin}\nSuite: stable\nCodename: stable\n"
               f"Date: Thu, 01 Jan 2026 00:00:00 UTC\n"
               f"MD5Sum:\n {sums['MD5Sum']} {len(packages)} Packages\n"
               f"SHA256:\n {sums['SHA256']} {len(packages)} Packages\n").encode()
    (folder / "Release").write_bytes(release)
    (folder / "InRelease").write_bytes(key.clearsign(release))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, served: list[str], **kwargs) -> None:
        self._served = served
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def send_head(self):
        f = super().send_head()
        if f is not None:  # as a path, not as apt spelled it ("./", "%2b")
            self._served.append(posixpath.normpath(urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)))
        return f


class RepoServer:
    """``root`` over HTTP on ``host`` (a random port), in a thread; ``served`` lists every path
    it answered with 200 (what the test hosts really fetched)."""

    def __init__(self, root: pathlib.Path, host: str) -> None:
        self.served: list[str] = []
        handler = functools.partial(_Handler, directory=str(root), served=self.served)
        self._server = http.server.ThreadingHTTPServer((host, 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="apt-repo", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
