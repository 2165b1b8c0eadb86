"""What both demos share: the workdir check, stage timing and the progress interface."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterator

from ..errors import BadInput


def pea_env(verbose: bool) -> dict[str, str]:
    """The Peas' environment: their log level. A first run shows its own progress, not every
    Pea's start-up lines (nor a library's, such as faiss announcing which build it loaded)."""
    return {"JINAD_FAB_LOG_LEVEL": "INFO" if verbose else "WARNING"}


class Progress:
    """What a demo reports while it runs; the CLI draws it with rich, tests pass this silent one."""

    def status(self, text: str) -> None:
        """A stage begins."""

    @contextlib.contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        """A counted stage: the callable advances the bar by n items."""
        yield lambda n: None


class Timings(dict):
    """Stage name -> seconds, in the order the stages ran."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t0


def writable_dir(path: str | os.PathLike) -> pathlib.Path:
    """Create `path` if needed and prove we can write in it; BadInput says why not."""
    p = pathlib.Path(path).expanduser().resolve()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".jinad-fab-probe-"):
            pass
    except OSError as exc:
        raise BadInput(f"cannot write to the work directory {str(p)!r}: {exc.strerror or exc}") from exc
    return p
