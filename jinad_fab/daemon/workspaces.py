"""Workspace files: upload parsing, path confinement, safe archive unpacking, ``.jinad`` parsing.

Nothing here trusts a client-supplied name. Every path is checked by :func:`safe_relpath` before
anything is written; uploads are first unpacked into a private staging directory and only moved
into the workspace once the whole request has been accepted, so a refused upload leaves no file
behind, inside or outside the workspace.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import pathlib
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from .. import jinadfile, safe_yaml
from ..errors import BadConfig, Invalid, PayloadTooLarge, Unprocessable

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def bad(msg: str) -> Invalid:
    return Invalid(msg)


def too_large(msg: str) -> PayloadTooLarge:
    return PayloadTooLarge(msg)


def shown(name: str, limit: int = 80) -> str:
    """A client-supplied name quoted for a message, cut to about ``limit`` characters.

    A long one keeps its start and its end, where the file's own name is, around an ellipsis."""
    if len(name) > limit:
        name = f"{name[:limit // 2]}...{name[-(limit // 2):]}"
    return repr(name)


def safe_relpath(name: str) -> pathlib.PurePosixPath:
    """A client-supplied path made safe, or :class:`Invalid`: relative, no ``..``, no NUL, bounded."""
    if not isinstance(name, str) or not name:
        raise bad("empty file name")
    if "\x00" in name:
        raise bad("file name contains a NUL byte")
    if "\\" in name:
        raise bad(f"file name {shown(name)} contains a backslash")
    if len(name.encode()) > MAX_PATH_BYTES:
        raise bad(f"file name is longer than {MAX_PATH_BYTES} bytes")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise bad(f"absolute path {shown(name)} is not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise bad(f"file name {shown(name)} names no file")
    for part in parts:
        if part == "..":
            raise bad(f"path {shown(name)} leaves the workspace")
        if len(part.encode()) > MAX_NAME_BYTES:
            raise bad(f"a path component is longer than {MAX_NAME_BYTES} bytes")
        if any(ord(c) < 32 for c in part):
            raise bad(f"file name {shown(name)} contains control characters")
    return pathlib.PurePosixPath(*parts)


def confined(root: pathlib.Path, rel: pathlib.PurePosixPath) -> pathlib.Path:
    """``root / rel``, refusing it if symlinks already in ``root`` would lead it elsewhere."""
    target = root / rel
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
        raise bad(f"path {shown(str(rel))} leaves the workspace")
    return target


# ---- multipart upload ----------------------------------------------------------------------------


async def read_upload(request: Request, *, max_bytes: int, max_files: int) -> list[tuple[str, UploadFile]]:
    """Parse a multipart body (repeated field ``files``), spooled to disk, bounded in size and count.

    A declared ``Content-Length`` over the limit is refused before any of the body is read; a
    chunked body is counted as it streams and refused as soon as it crosses the limit.
    """
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise Unprocessable("expected a multipart/form-data body with one or more 'files' parts")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise bad("bad Content-Length") from None
        if size > max_bytes:
            raise too_large(f"upload of {size} bytes is over the limit of {max_bytes} bytes")

    async def counted() -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > max_bytes:
                raise too_large(f"upload is over the limit of {max_bytes} bytes")
            yield chunk

    parser = MultiPartParser(Headers(scope=request.scope), counted(), max_files=max_files, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if "Too many files" in str(exc):  # starlette has no subclass for this one
            raise too_large(f"more than {max_files} files in one upload") from exc
        raise bad(f"malformed multipart body: {exc}") from exc
    parts: list[tuple[str, UploadFile]] = []
    for field, value in form.multi_items():
        if not isinstance(value, UploadFile):
            if field == "files":  # a part with no filename: text, not a file
                await form.close()
                raise Unprocessable("each 'files' part must be a file (with a filename)")
            continue
        if field != "files":
            await form.close()
            raise Unprocessable(f"unexpected file field {field!r}; use 'files'")
        parts.append((value.filename or "", value))
    return parts


# ---- staging and archives --------------------------------------------------------------------


class Limits:
    def __init__(self, max_files: int, max_extract_bytes: int, max_ratio: float):
        self.max_files = max_files
        self.max_extract_bytes = max_extract_bytes
        self.max_ratio = max_ratio
        self.files = 0
        self.bytes = 0

    def add_file(self) -> None:
        self.files += 1
        if self.files > self.max_files:
            raise too_large(f"more than {self.max_files} files after unpacking")

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_extract_bytes:
            raise too_large(f"unpacked content is over {self.max_extract_bytes} bytes (decompression bomb?)")


def is_archive(rel: pathlib.PurePosixPath) -> bool:
    return str(rel).lower().endswith(_ARCHIVE_SUFFIXES)


_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, NotImplementedError,
            RuntimeError)


@contextlib.contextmanager
def client_entry(entry: str) -> Iterator[None]:
    """Errors the upload caused while writing ``entry`` become a 400 naming it (not a 500)."""
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise bad(f"{entry}: a path in the upload is both a file and a directory") from None
    except _CORRUPT as exc:  # a member whose header lies about its size, a bad CRC, a truncated stream
        raise bad(f"{entry} is corrupt: {type(exc).__name__}: {str(exc)[:200]}") from None


def _copy(src: IO[bytes], dst: pathlib.Path, limits: Limits, cap: int | None = None) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(1024 * 1024):
            written += len(chunk)
            limits.add_bytes(len(chunk))
            if cap is not None and written > cap:
                raise too_large(f"{dst.name} unpacks to more than {cap} bytes (decompression bomb?)")
            out.write(chunk)
    return written


def stage(parts: list[tuple[pathlib.PurePosixPath, IO[bytes]]], staging: pathlib.Path, limits: Limits,
          *, extract: bool = True) -> list[str]:
    """Write the uploaded parts under ``staging``, unpacking archives in place. Returns the file list."""
    for rel, fh in parts:
        fh.seek(0)
        if extract and is_archive(rel):
            fh.seek(0, os.SEEK_END)
            packed = max(fh.tell(), 1)
            fh.seek(0)
            _extract(fh, rel, staging / rel.parent, limits, packed)
        else:
            limits.add_file()
            with client_entry(str(rel)):
                _copy(fh, staging / rel, limits)
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())


def _extract(fh: IO[bytes], rel: pathlib.PurePosixPath, dest: pathlib.Path, limits: Limits, packed: int) -> None:
    cap = int(packed * limits.max_ratio) + 1024 * 1024
    name = str(rel).lower()
    if name.endswith(".zip"):
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise bad(f"{rel} is not a valid zip archive") from exc
        with zf:
            infos = zf.infolist()
            for info in infos:  # check every member before writing any
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    raise bad(f"{rel}: member {shown(info.filename)} is a symlink")
                _member_path(rel, info.filename)
            if sum(i.file_size for i in infos) > cap:
                raise too_large(f"{rel} declares more than {cap} unpacked bytes (decompression bomb?)")
            total = 0
            for info in infos:
                target = dest / _member_path(rel, info.filename)
                with client_entry(f"{rel}: member {shown(info.filename)}"):
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    limits.add_file()
                    with zf.open(info) as src:
                        total += _copy(src, target, limits, cap - total)
        return
    try:
        tf = tarfile.open(fileobj=fh, mode="r:*")
        with client_entry(str(rel)):
            tf.getmembers()  # reads every header: a truncated or corrupt stream fails here
    except tarfile.TarError as exc:
        raise bad(f"{rel} is not a valid tar archive") from exc
    with tf:
        members = tf.getmembers()
        for m in members:
            if m.issym() or m.islnk():
                raise bad(f"{rel}: member {shown(m.name)} is a link")
            if not (m.isfile() or m.isdir()):
                raise bad(f"{rel}: member {shown(m.name)} is not a regular file or directory")
            _member_path(rel, m.name)
        if sum(m.size for m in members) > cap:
            raise too_large(f"{rel} declares more than {cap} unpacked bytes (decompression bomb?)")
        total = 0
        for m in members:
            target = dest / _member_path(rel, m.name)
            with client_entry(f"{rel}: member {shown(m.name)}"):
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                limits.add_file()
                src = tf.extractfile(m)
                assert src is not None
                total += _copy(src, target, limits, cap - total)


def _member_path(archive: pathlib.PurePosixPath, name: str) -> pathlib.PurePosixPath:
    try:
        return safe_relpath(name)
    except Invalid as exc:
        raise bad(f"{archive}: {exc}") from None


def merge(staging: pathlib.Path, root: pathlib.Path) -> None:
    """Move staged files into the workspace, replacing same-named files."""
    root.mkdir(parents=True, exist_ok=True)
    for src in sorted(staging.rglob("*")):
        if not src.is_file():
            continue
        rel = pathlib.PurePosixPath(src.relative_to(staging).as_posix())
        target = confined(root, rel)
        if target.is_symlink() or target.is_dir():
            raise bad(f"{rel} would replace a link or a directory in the workspace")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)


def new_staging(tmp_root: pathlib.Path) -> pathlib.Path:
    tmp_root.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix="upload-", dir=tmp_root))


def list_files(root: pathlib.Path, limit: int = 1000) -> list[str]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out.append(p.relative_to(root).as_posix())
            if len(out) >= limit:
                break
    return out


def remove_tree(path: pathlib.Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ---- .jinad and YAML ---------------------------------------------------------------------------


def parse_jinad(text: str) -> dict[str, Any]:
    """The ``.jinad`` INI file, validated by :mod:`jinad_fab.jinadfile`; a bad one is refused (400)."""
    return jinadfile.parse(text).as_dict()


def check_yaml(path: pathlib.Path) -> Any:
    """Load a YAML file the safe way (local ``!Tags`` read as plain data), or raise :class:`Invalid`
    (e.g. for a ``!!python/...`` tag)."""
    try:
        return safe_yaml.load_file(path, mode="check", what=f"YAML in {path.name}", name=path.name)
    except BadConfig as exc:
        raise bad(str(exc)[:400]) from exc


def _refuse_confine_env(env: Any, what: str) -> None:
    from ..executors.loader import CONFINE_ENV

    if isinstance(env, dict) and any(str(k).upper() == CONFINE_ENV for k in env):
        raise bad(f"{what}: env may not set {CONFINE_ENV}")


def confine_pod(args: dict[str, Any], root: pathlib.Path, *, base_dir: pathlib.Path | None = None,
                what: str = "Pod") -> None:
    """Every path a Pod names (``uses`` and what its YAML names, ``py_modules``, ``upload_files``)
    resolved inside ``root`` by the loader itself; 400 naming the path otherwise."""
    from ..errors import BadInput
    from ..executors.loader import check_paths

    _refuse_confine_env(args.get("env"), what)
    try:
        check_paths(args.get("uses") or "_pass", py_modules=args.get("py_modules") or (),
                    upload_files=args.get("upload_files") or (), base_dir=str(base_dir or root), root=root)
        confine_ca_file(args.get("ca_file"), base_dir or root, root)
    except BadInput as exc:
        raise bad(f"{what}: {exc}") from exc


def confine_ca_file(value: Any, base_dir: pathlib.Path, root: pathlib.Path) -> None:
    """A CA bundle a Flow or a remote Pod names (issue 14) is a path like the others: in the workspace."""
    from ..executors.loader import resolve_path

    if value:
        resolve_path(str(value), str(base_dir), "ca_file", root)


def confine_flow(path: pathlib.Path, data: Any, root: pathlib.Path) -> None:
    """The same for every Pod of a Flow YAML (paths relative to the Flow file's directory)."""
    if not isinstance(data, dict):
        return  # the Flow itself reports what is wrong with its shape
    options = data.get("with")
    if isinstance(options, dict):
        from ..errors import BadInput

        try:
            confine_ca_file(options.get("ca_file"), path.parent, root)
        except BadInput as exc:
            raise bad(f"{path.name}: {exc}") from exc
    pods = data.get("pods", data.get("executors")) or []
    if isinstance(pods, dict):
        pods = [{"name": k, **(v or {})} for k, v in pods.items()]
    if not isinstance(pods, list):
        return
    for i, pod in enumerate(pods):
        if isinstance(pod, dict):
            confine_pod(pod, root, base_dir=path.parent, what=f"{path.name}: Pod {pod.get('name') or i!r}")
