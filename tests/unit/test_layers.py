"""Imports by string obey the same layer contracts as `import` statements.

import-linter (the `lint-imports` step) sees `import` statements only. A module can still reach a
layer above it by name — ``importlib.import_module("jinad_fab.flow.serve")``, ``__import__``,
``importlib.util.find_spec``, or a ``[python, "-m", "jinad_fab.launch", ...]`` command line — and
that is how ``runtime`` used to depend on ``flow`` while every contract passed. This test parses
every module of the package with :mod:`ast`, works out where each such string points, and holds
it to the contracts in pyproject.toml's ``[tool.importlinter]``: one list of rules for both.

Downward imports by string stay allowed (the package's lazy public names, the CLI's lazy command
list, the daemon's optional runtimes). A dynamic import whose target cannot be read from the source
fails too: name the module in a constant so both the reader and this test can see it.
"""

from __future__ import annotations

import ast
import pathlib
import textwrap
from dataclasses import dataclass

import pytest

import jinad_fab

try:
    import tomllib
except ImportError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

ROOT = "jinad_fab"
PACKAGE_DIR = pathlib.Path(jinad_fab.__file__).parent
PYPROJECT = PACKAGE_DIR.parent / "pyproject.toml"

_CALLS = {"import_module", "__import__", "find_spec", "resolve_name"}


@dataclass(frozen=True)
class StringImport:
    module: str  # the importing module
    target: str | None  # the module named, None when it cannot be read from the source
    line: int
    how: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} {self.how} -> {self.target or '<not readable from the source>'}"


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _bindings(tree: ast.AST) -> dict[str, list[ast.AST]]:
    """Every expression a name is bound to anywhere in the module (assignments and for-loops)."""
    out: dict[str, list[ast.AST]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        out.setdefault(n.id, []).append(node.value)
        elif isinstance(node, ast.For | ast.comprehension):
            for n in ast.walk(node.target):
                if isinstance(n, ast.Name):
                    out.setdefault(n.id, []).append(node.iter)
    return out


def _module_like(s: str) -> bool:
    return s == ROOT or s.startswith((ROOT + ".", "."))


def _resolve(expr: ast.AST, bindings: dict[str, list[ast.AST]], seen: frozenset[str] = frozenset()
             ) -> list[str] | None:
    """The module names ``expr`` can evaluate to (None when unknown). An f-string stands for its
    constant prefix: ``f"jinad_fab.flow.{x}"`` names something inside ``jinad_fab.flow``."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value]
    if isinstance(expr, ast.JoinedStr):
        prefix = ""
        for part in expr.values:
            if not (isinstance(part, ast.Constant) and isinstance(part.value, str)):
                break
            prefix += part.value
        prefix = prefix.rstrip(".") if prefix.strip(".") else prefix
        return [prefix] if prefix else None
    if isinstance(expr, ast.Name) and expr.id in bindings and expr.id not in seen:
        found: list[str] = []
        for value in bindings[expr.id]:
            sub = _resolve(value, bindings, seen | {expr.id})
            found.extend(sub if sub is not None else [s for s in _strings(value) if _module_like(s)])
        return found
    if isinstance(expr, ast.Attribute | ast.Subscript | ast.Call):
        names = [s for s in _strings(expr) if _module_like(s)]
        for n in ast.walk(expr):
            if isinstance(n, ast.Name) and n.id in bindings and n.id not in seen:
                for value in bindings[n.id]:
                    names.extend(s for s in _strings(value) if _module_like(s))
        return names or None
    return None


def _absolute(name: str, package: str | None) -> str:
    if not name.startswith("."):
        return name
    if not package:
        return name
    level = len(name) - len(name.lstrip("."))
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    rest = name[level:]
    return f"{base}.{rest}" if rest else base


def string_imports(source: str, module: str, is_package: bool = False) -> list[StringImport]:
    """Every import by string in ``source`` (the text of ``module``), resolved where the source allows."""
    tree = ast.parse(source)
    bindings = _bindings(tree)
    here = _package_of(module, is_package)
    out: list[StringImport] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else None
            if name not in _CALLS or not node.args:
                continue
            package: str | None = None
            pkg_arg = node.args[1] if len(node.args) > 1 and name != "__import__" else next(
                (k.value for k in node.keywords if k.arg == "package"), None)
            if isinstance(pkg_arg, ast.Name) and pkg_arg.id == "__name__":
                package = module
            elif isinstance(pkg_arg, ast.Name) and pkg_arg.id == "__package__":
                package = here
            elif isinstance(pkg_arg, ast.Constant) and isinstance(pkg_arg.value, str):
                package = pkg_arg.value
            if name == "__import__":
                level = next((k.value for k in node.keywords if k.arg == "level"), None)
                if len(node.args) >= 5:
                    level = node.args[4]
                if isinstance(level, ast.Constant) and isinstance(level.value, int) and level.value > 0:
                    package = here
            targets = _resolve(node.args[0], bindings)
            if targets is None:
                out.append(StringImport(module, None, node.lineno, f"{name}(...)"))
                continue
            for t in targets:
                if name == "__import__" and package == here and not t.startswith("."):
                    t = "." + t
                full = _absolute(t, package or here)
                if _within(full, ROOT):
                    out.append(StringImport(module, full, node.lineno, f"{name}({t!r})"))
        elif isinstance(node, ast.List | ast.Tuple):
            items = node.elts
            for a, b in zip(items, items[1:], strict=False):
                if (isinstance(a, ast.Constant) and a.value == "-m" and isinstance(b, ast.Constant)
                        and isinstance(b.value, str) and _within(b.value, ROOT)):
                    out.append(StringImport(module, b.value, node.lineno, f"python -m {b.value}"))
    return out


def _contracts() -> list[dict]:
    with open(PYPROJECT, "rb") as fh:
        return tomllib.load(fh)["tool"]["importlinter"]["contracts"]


def violations(found: list[StringImport], contracts: list[dict]) -> list[str]:
    """Each string import that one of the contracts forbids, with the contract's name."""
    bad: list[str] = []
    for imp in found:
        if imp.target is None:
            bad.append(f"{imp}: name the module in a constant so its layer can be checked")
            continue
        src, dst = imp.module, imp.target
        for c in contracts:
            kind = c["type"]
            if kind == "forbidden":
                if any(_within(src, s) for s in c["source_modules"]) and any(
                        _within(dst, f) for f in c["forbidden_modules"]):
                    bad.append(f"{imp}: breaks {c['name']!r}")
            elif kind == "layers":
                layers = [[m.strip() for m in layer.split("|")] for layer in c["layers"]]

                def level(m: str, layers: list[list[str]] = layers) -> int | None:
                    return next((i for i, names in enumerate(layers) if any(_within(m, n) for n in names)), None)

                ls, ld = level(src), level(dst)
                if ls is not None and ld is not None and ld < ls:
                    bad.append(f"{imp}: breaks {c['name']!r} (imports a higher layer)")
            elif kind == "protected":
                if any(_within(dst, p) for p in c["protected_modules"]) and not any(
                        _within(src, a) for a in [*c["allowed_importers"], *c["protected_modules"]]):
                    bad.append(f"{imp}: breaks {c['name']!r}")
    return bad


def _package_modules() -> list[tuple[str, bool, pathlib.Path]]:
    return [(_module_name(p), p.name == "__init__.py", p) for p in sorted(PACKAGE_DIR.rglob("*.py"))]


def test_no_string_import_crosses_a_layer_upward() -> None:
    contracts = _contracts()
    found = [imp for module, is_pkg, path in _package_modules()
             for imp in string_imports(path.read_text(encoding="utf-8"), module, is_pkg)]
    assert found, "the scan found no string import at all: it is not looking"
    assert violations(found, contracts) == []


def test_the_known_downward_string_imports_are_seen_and_allowed() -> None:
    """The scan reads the legitimate ones (so a pass above means something): the lazy public names,
    the CLI's command list, the daemon's runtimes and the runtime's own `python -m jinad_fab.runtime`."""
    found = {(imp.module, imp.target) for module, is_pkg, path in _package_modules()
             for imp in string_imports(path.read_text(encoding="utf-8"), module, is_pkg)}
    assert ("jinad_fab", "jinad_fab") in found  # f".{module}" relative to the package: the root itself
    assert ("jinad_fab.cli.main", "jinad_fab.cli.commands.flow") in found
    assert ("jinad_fab.daemon.app", "jinad_fab.daemon.runtimes.docker") in found
    assert ("jinad_fab.runtime.child", "jinad_fab.runtime") in found  # the command its children run


PLANTED = {
    # what runtime/__main__.py and runtime/zygote.py did before launch/ existed
    "import_module": 'import importlib\nserve = importlib.import_module("jinad_fab.flow.serve")\n',
    "dunder": 'm = __import__("jinad_fab.launch.zygote", fromlist=["serve"])\n',
    "constant": 'import importlib\nNAME = "jinad_fab.daemon.app"\n\ndef f():\n    return importlib.import_module(NAME)\n',
    "loop": ('from importlib import import_module\nMODS = ["jinad_fab.runtime.pea", "jinad_fab.remote"]\n'
             'for m in MODS:\n    import_module(m)\n'),
    "fstring": 'import importlib\n\ndef f(x):\n    return importlib.import_module(f"jinad_fab.cli.commands.{x}")\n',
    "relative": 'import importlib\nimportlib.import_module("..flow.builder", __package__)\n',
    "find_spec": 'import importlib.util\nimportlib.util.find_spec("jinad_fab.deploy.ssh")\n',
    "command": 'import sys\nCMD = [sys.executable, "-m", "jinad_fab.launch", "flow"]\n',
    "unreadable": 'import importlib\n\ndef f(name):\n    return importlib.import_module(name)\n',
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_a_planted_upward_string_import_in_runtime_fails(case: str) -> None:
    found = string_imports(textwrap.dedent(PLANTED[case]), "jinad_fab.runtime._planted")
    assert found
    bad = violations(found, _contracts())
    assert bad, f"{case}: {found} was not caught"


def test_the_same_strings_downward_pass() -> None:
    """From launch (the top of the pipeline layers) into runtime and flow is fine."""
    src = ('import importlib\nimportlib.import_module("jinad_fab.flow.yaml")\n'
           'importlib.import_module("jinad_fab.runtime.pea")\nCMD = ["python", "-m", "jinad_fab.runtime"]\n')
    found = string_imports(src, "jinad_fab.launch._planted")
    assert {i.target for i in found} == {"jinad_fab.flow.yaml", "jinad_fab.runtime.pea", "jinad_fab.runtime"}
    assert violations(found, _contracts()) == []


def test_the_contracts_cover_every_arrow_the_design_names() -> None:
    """The forbidden pairs the design's "Dependency direction" lists, checked against the contracts."""
    must_forbid = [
        ("jinad_fab.runtime", m) for m in ("flow", "launch", "daemon", "deploy", "cli", "remote", "client")
    ] + [
        ("jinad_fab.remote", m) for m in ("daemon", "deploy", "cli", "runtime", "flow", "client", "launch")
    ] + [
        ("jinad_fab.daemon", m) for m in ("deploy", "cli", "remote")
    ] + [
        ("jinad_fab.deploy", m) for m in ("daemon", "runtime", "cli")
    ] + [
        ("jinad_fab.hello", m) for m in ("runtime", "daemon", "cli")
    ] + [
        (f"jinad_fab.{m}", "cli") for m in ("daemon", "deploy", "flow", "runtime", "launch", "remote", "hello")
    ] + [
        (f"jinad_fab.{m}", "launch") for m in ("flow", "client", "executors", "wire", "document", "remote", "deploy")
    ] + [
        ("jinad_fab.executors", "runtime"), ("jinad_fab.wire", "executors"), ("jinad_fab.document", "wire"),
        ("jinad_fab.client", "flow"), ("jinad_fab.flow", "launch"),
    ]
    contracts = _contracts()
    missing = []
    for src, dst in must_forbid:
        imp = StringImport(f"{src}._probe", f"jinad_fab.{dst}.x", 1, "probe")
        if not violations([imp], contracts):
            missing.append(f"{src} -> jinad_fab.{dst}")
    assert missing == []
    allowed = [("jinad_fab.daemon.x", "jinad_fab.launch"), ("jinad_fab.cli.x", "jinad_fab.launch"),
               ("jinad_fab.launch.x", "jinad_fab.flow"), ("jinad_fab.flow.x", "jinad_fab.remote"),
               ("jinad_fab.flow.x", "jinad_fab.client"), ("jinad_fab.client", "jinad_fab.runtime")]
    for src, dst in allowed:
        assert violations([StringImport(src, dst, 1, "probe")], contracts) == [], (src, dst)
