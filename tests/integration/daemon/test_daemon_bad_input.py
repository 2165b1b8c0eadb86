"""Bad input is refused with the right status and nothing is written outside the workspace."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import httpx
import pytest

from tests.support.daemons import FLOW_YML, Daemon, active_workspace, running, upload, wait_state

EVIL = "evil-marker.txt"


@pytest.fixture(scope="module")
def refusing(tmp_path_factory):
    """One daemon for the tests below that only send what it must refuse: each checks that the
    refusal left nothing (no workspace listed, nothing in its workspaces folder, no marker written
    near its home), which is also what lets the next one share it. A start per case cost ~1.5 s of
    CPU each, twenty times."""
    with running(Daemon(tmp_path_factory.mktemp("refusing") / "jinad")) as d:
        yield d


def _outside(home, tmp_path) -> list[str]:
    """Files named like our marker anywhere near the daemon's home (but not inside a workspace)."""
    hits = []
    for base in (tmp_path, home.parent, home, home / "workspaces"):
        for root, _, files in os.walk(base):
            if EVIL in files and "/files" not in root:
                hits.append(os.path.join(root, EVIL))
    return hits


@pytest.mark.parametrize("name", [f"../{EVIL}", f"/tmp/{EVIL}", f"a/../../{EVIL}", f"x\x00/{EVIL}",
                                  "a" * 300, f"..\\{EVIL}", "/".join(["d"] * 600)])
def test_upload_bad_names(refusing, tmp_path, name):
    jinad = refusing
    with jinad.client() as c:
        r = c.post("/workspaces", content=_raw_multipart({"ok.txt": b"fine", name: b"pwned"}),
                   headers={"content-type": "multipart/form-data; boundary=XyZ"})
        assert r.status_code == 400, r.text
        assert isinstance(r.json()["detail"], str)
        assert c.get("/workspaces").json()["items"] == []
    assert _outside(jinad.home, tmp_path) == []
    assert list((jinad.home / "workspaces").iterdir()) == []


def _raw_multipart(files: dict[str, bytes]) -> bytes:
    """Built by hand: httpx would percent-encode a NUL, we want the raw byte on the wire."""
    out = b""
    for name, data in files.items():
        out += (b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name.encode()
                + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    return out + b"--XyZ--\r\n"


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo("link")
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, symlink)
    return buf.getvalue()


def _tar(add) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add(tf)
    return buf.getvalue()


def _tar_member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""):
    def add(tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return add


@pytest.mark.parametrize("archive,expected", [
    (("a.zip", _zip({f"../{EVIL}": b"pwned"})), 400),
    (("a.zip", _zip({f"/tmp/{EVIL}": b"pwned"})), 400),
    (("a.zip", _zip({"ok.txt": b"x"}, symlink="/etc/passwd")), 400),
    (("a.zip", _zip({"bomb.bin": b"\0" * (30 * 1024 * 1024)})), 413),
    (("a.tgz", _tar(_tar_member(f"../{EVIL}"))), 400),
    (("a.tgz", _tar(_tar_member(f"/tmp/{EVIL}"))), 400),
    (("a.tgz", _tar(_tar_member("link", kind=tarfile.SYMTYPE, link="/etc"))), 400),
    (("a.tgz", _tar(_tar_member("hard", kind=tarfile.LNKTYPE, link="/etc/passwd"))), 400),
    (("a.tgz", _tar(_tar_member("bomb.bin", b"\0" * (30 * 1024 * 1024)))), 413),
    (("a.zip", b"this is not a zip"), 400),
])
def test_upload_bad_archives(refusing, tmp_path, archive, expected):
    jinad = refusing
    name, data = archive
    with jinad.client() as c:
        r = upload(c, {name: data})
        assert r.status_code == expected, r.text
        assert c.get("/workspaces").json()["items"] == []
    assert _outside(jinad.home, tmp_path) == []
    assert list((jinad.home / "workspaces").iterdir()) == []


def test_good_archive_is_unpacked_in_place(jinad):
    with jinad.client() as c:
        data = _zip({"flow.yml": FLOW_YML.encode(), "pkg/mod.py": b"X = 1\n"})
        r = upload(c, {"sub/bundle.zip": data})
        assert r.status_code == 201, r.text
        assert sorted(r.json()["files"]) == ["sub/flow.yml", "sub/pkg/mod.py"]


def test_upload_limits(daemon_factory):
    d = daemon_factory(extra=["--max-upload-bytes", "4096", "--max-files", "3"])
    with d.client() as c:
        r = upload(c, {"big.bin": b"x" * 10000})
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = upload(c, {f"f{i}.txt": "x" for i in range(5)})
        assert r.status_code == 413
        def chunks():  # a generator: sent chunked, without Content-Length, counted while streaming
            yield _raw_multipart({"big.bin": b""})[:-len(b"\r\n--XyZ--\r\n")]
            for _ in range(20):
                yield b"y" * 1000

        r = c.post("/workspaces", content=chunks(), headers={"content-type": "multipart/form-data; boundary=XyZ"})
        assert r.status_code == 413
        assert c.post("/workspaces", json={"files": []}).status_code == 422
        assert upload(c, {"ok.txt": "small"}).status_code == 201


def test_yaml_python_tags_and_missing_flow_file(jinad, tmp_path):
    marker = tmp_path / "pwned-by-yaml"
    evil = f"!Flow\npods:\n  - name: a\n    uses: !!python/object/apply:os.system ['touch {marker}']\n"
    with jinad.client() as c:
        wid = active_workspace(c, {"flow.yml": FLOW_YML, "evil.yml": evil})
        r = c.post("/flows", params={"workspace_id": wid, "filename": "evil.yml"})
        assert r.status_code == 400 and "python" in r.json()["detail"]
        assert not marker.exists()
        r = c.post("/flows", params={"workspace_id": wid, "filename": "missing.yml"})
        # a file the workspace does not have is a missing resource (404), as GET of it is
        assert r.status_code == 404 and "missing.yml" in r.json()["detail"]
        r = c.post("/flows", params={"workspace_id": wid, "filename": "../../jinad.db"})
        assert r.status_code == 400
        r = c.post("/pods", params={"workspace_id": wid}, json={"name": "p", "uses": "evil.yml"})
        assert r.status_code == 400
        assert c.get("/flows").json()["items"] == []


def test_unknown_and_mistyped_ids(jinad):
    with jinad.client() as c:
        unknown = "jflow-" + "0" * 32
        assert c.get(f"/flows/{unknown}").status_code == 404
        assert c.delete(f"/flows/{unknown}").status_code == 404
        assert c.get("/flows/not-an-id").status_code == 422
        assert c.get(f"/pods/{unknown}").status_code == 422  # a flow id is not a pod id
        assert c.get(f"/logs/{unknown}").status_code == 404
        assert c.post("/flows", params={"workspace_id": "jworkspace-" + "1" * 32}).status_code == 404
        assert c.post("/flows", params={"workspace_id": "nope"}).status_code == 422
        assert c.post("/pods", params={"workspace_id": "jworkspace-" + "1" * 32},
                      json={"name": "p", "bogus": 1}).status_code == 422
        r = c.post("/pods", params={"workspace_id": "jworkspace-" + "1" * 32}, json={"name": "p", "paralel": 2})
        assert r.status_code == 422 and "did you mean 'parallel'?" in r.text  # the Pod spec's own check
        r = c.post("/pods", params={"workspace_id": "jworkspace-" + "1" * 32}, content=b"{not json",
                   headers={"content-type": "application/json"})
        assert r.status_code == 422 and "detail" in r.json()


def test_workspace_not_active_is_409_and_failed_build_can_be_fixed(jinad):
    with jinad.client() as c:
        r = upload(c, {"flow.yml": FLOW_YML, "requirements.txt": "no-such-package-jinad-fab-test==9.9\n"})
        wid = r.json()["id"]
        r = c.post("/flows", params={"workspace_id": wid})
        assert r.status_code in (201, 409)  # 409 while PENDING/BUILDING
        if r.status_code == 201:
            pytest.fail("a Flow started in a workspace whose build cannot succeed")
        ws = wait_state(c, f"/workspaces/{wid}", {"ACTIVE", "FAILED"})
        assert ws["state"] == "FAILED" and "pip" in ws["error"]
        assert any("no-such-package" in line for line in ws["build_log_tail"])
        assert c.post("/flows", params={"workspace_id": wid}).status_code == 409
        r = c.put(f"/workspaces/{wid}", files=[("files", ("requirements.txt", b"# nothing needed\n"))])
        assert r.status_code == 200, r.text
        assert wait_state(c, f"/workspaces/{wid}", {"ACTIVE", "FAILED"})["state"] == "ACTIVE"
        assert c.post("/flows", params={"workspace_id": wid}).status_code == 201


def test_non_loopback_bind_needs_a_token(tmp_path):
    import subprocess
    import sys

    from tests.support.daemons import REPO_PARENT
    env = dict(os.environ, PYTHONPATH=REPO_PARENT)
    r = subprocess.run([sys.executable, "-m", "jinad_fab.cli.daemon", "--host", "0.0.0.0", "--port", "0",
                        "--home", str(tmp_path / "h")], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "token" in r.stderr  # a usage error
    assert not httpx.URL("http://0.0.0.0").is_relative_url


def _lying_zip() -> bytes:
    """A zip whose member header says 5 bytes while the stored data is longer: reading it fails."""
    data = _zip({"ok.txt": b"fine", "liar.txt": b"x" * 4000})
    local = data.index(b"PK\x03\x04", data.index(b"PK\x03\x04") + 4)  # the second member's local header
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # and its central directory entry
    out = bytearray(data)
    for off in (local + 22, central + 24):  # uncompressed size fields
        out[off:off + 4] = (5).to_bytes(4, "little")
    return bytes(out)


@pytest.mark.parametrize("files, named", [
    ({"bundle.zip": None}, "liar.txt"),
    ({"x": b"a file", "x/y": b"and a file under it"}, "x/y"),
    ({"x/y": b"a file under it", "x": b"and a file"}, "x"),
    ({"broken.tar.gz": None}, "broken.tar.gz"),
])
def test_archive_and_upload_mistakes_are_400_naming_the_entry(refusing, tmp_path, files, named):
    import gzip

    jinad = refusing

    payload = {}
    for name, data in files.items():
        if name == "bundle.zip":
            data = _lying_zip()
        elif name == "broken.tar.gz":
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tf:
                info = tarfile.TarInfo("a.txt")
                info.size = 3000
                tf.addfile(info, io.BytesIO(b"y" * 3000))
            data = gzip.compress(buf.getvalue())[:-700]  # cut short
        payload[name] = data
    with jinad.client() as c:
        r = c.post("/workspaces", content=_raw_multipart(payload),
                   headers={"content-type": "multipart/form-data; boundary=XyZ"})
        assert r.status_code == 400, (r.status_code, r.text)
        assert named in r.json()["detail"], r.text
        assert c.get("/workspaces").json()["items"] == []
    assert _outside(jinad.home, tmp_path) == []
    assert list((jinad.home / "workspaces").iterdir()) == []
