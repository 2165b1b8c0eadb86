"""Real pip semantics in a workspace venv, offline: a wheel built here, found through --find-links."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import zipfile

from tests.support.daemons import FLOW_YML, upload, wait_state


def _wheel(name: str, version: str, module_src: str) -> tuple[str, bytes]:
    """A minimal valid wheel, assembled by hand (no build backend, no network)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module_src.encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


def test_requirements_with_comments_options_and_includes(jinad):
    whl_name, whl = _wheel("jfabtinypkg", "0.3", "ANSWER = 42\n")
    requirements = "# what this workspace needs\n--no-index\n--find-links wheels\n-r more/extra.txt\n"
    with jinad.client() as c:
        r = upload(c, {"flow.yml": FLOW_YML, "requirements.txt": requirements,
                       "more/extra.txt": "jfabtinypkg==0.3  # pinned\n", f"wheels/{whl_name}": whl})
        assert r.status_code == 201, r.text
        ws = wait_state(c, f"/workspaces/{r.json()['id']}", {"ACTIVE", "FAILED"}, timeout=120)
        assert ws["state"] == "ACTIVE", ws
        venv_py = jinad.home / "workspaces" / ws["id"] / "env" / "venv" / "bin" / "python"
        out = subprocess.run([str(venv_py), "-c", "import jfabtinypkg, numpy; print(jfabtinypkg.ANSWER)"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "42", out.stderr
        # installed in the workspace's venv only, not on the host
        host = subprocess.run(["python", "-c", "import jfabtinypkg"], capture_output=True, timeout=60)
        assert host.returncode != 0
        assert "Successfully installed jfabtinypkg-0.3" in c.get(f"/logs/{ws['id']}").text

        # a rebuild with unchanged requirements is quick (pip sees them satisfied)
        r = c.put(f"/workspaces/{ws['id']}")
        assert r.status_code == 200 and r.json()["state"] == "PENDING"
        again = wait_state(c, f"/workspaces/{ws['id']}", {"ACTIVE", "FAILED"}, timeout=120)
        assert again["state"] == "ACTIVE"
        assert again["updated"] - r.json()["updated"] < 15
