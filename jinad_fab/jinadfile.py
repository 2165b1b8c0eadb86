"""The ``.jinad`` file: how a workspace asks for its environment.

An INI file with no section header needed (a ``[jinad]`` header is accepted), for example::

    python = 3.11
    ports = 45678, 45679
    run = "python app.py 45678"
    requirements = requirements.txt
    dockerfile = Dockerfile          # build this file instead of the rendered one

Every value is validated here, once, so that what reaches a Dockerfile template or a container
is plain data: no newlines or control characters, ports are integers, paths stay inside the
workspace. Neutral module: the daemon and the CLI both use it; it imports only ``errors``.
"""

from __future__ import annotations

import configparser
import dataclasses
import pathlib
import re
import shlex
from collections.abc import Mapping
from typing import Any

from .errors import BadConfig

FILENAME = ".jinad"
DEFAULT_PYTHON = "3.11"
DEFAULT_REQUIREMENTS = "requirements.txt"

_KEYS = ("python", "ports", "run", "requirements", "dockerfile", "build", "jina")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclasses.dataclass(frozen=True)
class JinadConfig:
    """A validated ``.jinad``; :meth:`as_dict` is what the daemon stores and shows."""

    python: str = DEFAULT_PYTHON
    ports: tuple[int, ...] = ()
    run: tuple[str, ...] = ()
    """The custom command, already split the way a shell would (exec form, no shell)."""
    requirements: str = DEFAULT_REQUIREMENTS
    dockerfile: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "ports": list(self.ports),
            "run": list(self.run),
            "requirements": self.requirements,
            "dockerfile": self.dockerfile,
        }

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JinadConfig:
        """Validate raw strings (from the file) or an :meth:`as_dict` round trip."""
        unknown = sorted(set(values) - set(_KEYS))
        if unknown:
            raise BadConfig(f".jinad: unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS[:5])}")
        python = _text("python", values.get("python") or DEFAULT_PYTHON)
        if not _PYTHON.match(python):
            raise BadConfig(f".jinad: python must look like 3.11, not {python!r}")
        return cls(
            python=python,
            ports=_ports(values.get("ports")),
            run=_command(values.get("run")),
            requirements=_relpath("requirements", values.get("requirements") or DEFAULT_REQUIREMENTS),
            dockerfile=_relpath("dockerfile", values["dockerfile"]) if values.get("dockerfile") else None,
        )


def parse(text: str) -> JinadConfig:
    """Parse the text of a ``.jinad`` file."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        if not re.match(r"\s*\[", text):
            text = "[jinad]\n" + text
        parser.read_string(text, source=FILENAME)
    except configparser.Error as exc:
        raise BadConfig(f".jinad is not a valid INI file: {exc}") from exc
    sections = parser.sections()
    if sections != ["jinad"]:
        raise BadConfig(f".jinad: expected no section or a single [jinad] section, got {sections}")
    return JinadConfig.from_mapping(dict(parser["jinad"]))


def load(root: pathlib.Path) -> JinadConfig:
    """The workspace's ``.jinad``, or the defaults when it has none."""
    path = root / FILENAME
    if not path.is_file():
        return JinadConfig()
    try:
        return parse(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise BadConfig(".jinad is not UTF-8 text") from exc


def check_requirements(text: str) -> str:
    """The requirements a workspace image installs: plain specifiers and comments only.

    pip options (``--index-url``, ``-e``, ``-r``), paths and URLs are refused: they would make the
    daemon host fetch from wherever an upload says. Returns the requirements, one per line.
    """
    kept = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.split(" #", 1)[0].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(("-", ".", "/")) or "://" in stripped:
            raise BadConfig(
                f"requirements line {number} ({stripped!r}): only package specifiers are allowed, "
                "not pip options, paths or URLs"
            )
        kept.append(stripped)
    return "\n".join(kept) + ("\n" if kept else "")


def read_requirements(root: pathlib.Path, config: JinadConfig) -> str:
    """The checked requirements of the workspace at ``root`` (``""`` when it has none)."""
    path = root / config.requirements
    if not path.is_file():
        return ""
    return check_requirements(path.read_text(encoding="utf-8", errors="replace"))


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadConfig(f".jinad: {key} must be text, not {type(value).__name__}")
    value = _unquote(value)
    if _CONTROL.search(value):
        raise BadConfig(f".jinad: {key} must be one line without control characters")
    return value


def _ports(value: Any) -> tuple[int, ...]:
    if value in (None, "", [], ()):
        return ()
    items = value if isinstance(value, list | tuple) else re.split(r"[,\s]+", _text("ports", value))
    ports = []
    for item in items:
        if item == "":
            continue
        try:
            port = int(item)
        except (TypeError, ValueError):
            raise BadConfig(f".jinad: ports must be integers, not {item!r}") from None
        if not 1 <= port <= 65535:
            raise BadConfig(f".jinad: port {port} is out of range 1-65535")
        ports.append(port)
    return tuple(dict.fromkeys(ports))


def _command(value: Any) -> tuple[str, ...]:
    if value in (None, "", [], ()):
        return ()
    if isinstance(value, list | tuple):
        argv = [_text("run", str(v)) for v in value]
    else:
        try:
            argv = shlex.split(_text("run", value))
        except ValueError as exc:
            raise BadConfig(f".jinad: run is not a valid command line: {exc}") from exc
    for arg in argv:
        if _CONTROL.search(arg):
            raise BadConfig(".jinad: run must not contain control characters")
    return tuple(argv)


def _relpath(key: str, value: Any) -> str:
    text = _text(key, value)
    path = pathlib.PurePosixPath(text)
    if not text or path.is_absolute() or ".." in path.parts or "\\" in text:
        raise BadConfig(f".jinad: {key} must be a relative path inside the workspace, not {text!r}")
    return str(path)
