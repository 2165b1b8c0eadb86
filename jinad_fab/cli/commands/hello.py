"""`jinad-fab hello images|chat`: the offline first run (digits image search, a chat-style page)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ...hello._common import Progress as HelloProgress
from ._common import examples, load_inventory

_T0 = time.perf_counter()  # as close to "the command started" as this process can see


class RichProgress(HelloProgress):
    """Stages as dim lines and counted stages as transient bars, all on stderr."""

    def __init__(self, console: Console):
        self.console = console

    def status(self, text: str) -> None:
        self.console.print(f"[dim]· {text}[/dim]")

    @contextlib.contextmanager
    def bar(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=True) as p:
            task = p.add_task(label, total=total)
            yield lambda n: p.advance(task, n)


def _interrupted() -> None:
    click.echo("interrupted: the Flow was stopped and its processes are gone", err=True)
    sys.exit(130)


@examples(
    "jinad-fab hello images      # digits search, writes hello-images/hello-world.html",
    "jinad-fab hello chat        # a question/answer page on http://127.0.0.1:8080",
)
@click.group("hello")
def command() -> None:
    """The offline first run: a real Flow on data shipped with the install, and a page to look at."""


@examples(
    "jinad-fab hello images",
    "jinad-fab hello images --shards 4 --parallel 3 --json",
    "jinad-fab hello images -i local       # the Pods placed through the local inventory's jinad",
)
@command.command("images")
@click.option("--workdir", default="hello-images", show_default=True, type=click.Path(file_okay=False),
              help="Where the workspace and hello-world.html go (created if missing).")
@click.option("--seed", default=0, show_default=True, type=int, help="Shuffles the index/query split.")
@click.option("--dim", default=32, show_default=True, type=click.IntRange(1, 64),
              help="Dimensions the encoder projects the 64 pixels to.")
@click.option("--shards", default=2, show_default=True, type=click.IntRange(1, 16), help="Shards of the index Pod.")
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Replicas of the encoder Pod.")
@click.option("--top-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Matches per query.")
@click.option("--queries", default=200, show_default=True, type=click.IntRange(1, 1000),
              help="Digits held out as queries.")
@click.option("-i", "--inventory", default=None, metavar="INV",
              help="Place the Pods on an inventory's hosts (a path, or the shipped `local`).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary instead of prose.")
@click.option("-v", "--verbose", is_flag=True, help="Show the Peas' logs too (start-up, libraries loaded, stop).")
def images(workdir: str, seed: int, dim: int, shards: int, parallel: int, top_k: int, queries: int,
           inventory: str | None, as_json: bool, verbose: bool) -> None:
    """Search scikit-learn's bundled handwritten digits with a real Flow and write a report.

    The Flow is encoder (an SVD projection fitted on the indexed digits, PARALLEL replicas) ->
    _index (SHARDS shards). Held-out digits are the queries; their matches are scored against the
    labels next to a random baseline. Nothing is downloaded.
    """
    from ...hello.images import ImagesOptions, run_images

    err = Console(stderr=True, highlight=False)
    inv = load_inventory(inventory) if inventory else None
    opts = ImagesOptions(workdir=workdir, seed=seed, dim=dim, shards=shards, parallel=parallel, top_k=top_k,
                         queries=queries, inventory=inv, verbose=verbose)
    try:
        summary = run_images(opts, None if as_json else RichProgress(err))
    except KeyboardInterrupt:
        _interrupted()
    summary["timings"]["command"] = time.perf_counter() - _T0
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    from ...hello.report import headline

    out = Console(highlight=False)
    for sentence in headline(summary):
        out.print(sentence)
    out.print()
    k = summary["top_k"]
    names = ["precision@1", f"precision@{k}", f"recall@{k}"]
    t = Table(title=f"{summary['queries']} queries against {summary['index_size']} indexed digits, top {k}",
              title_justify="left")
    t.add_column("ranking")
    for n in names:
        t.add_column(n, justify="right")
    t.add_row("jinad-fab Flow", *(f"{summary['metrics'][n]:.3f}" for n in names))
    t.add_row("random baseline", *(f"{summary['baseline'][n]:.3f}" for n in names))
    out.print(t)
    stages = ", ".join(f"{name} {secs:.2f}s" for name, secs in summary["timings"].items()
                       if name not in ("total", "command"))
    out.print(f"stages: {stages}")
    out.print(f"command to report: [bold]{summary['timings']['command']:.1f} s[/bold]")
    for pod, info in summary["pods"].items():
        out.print(f"Pod {pod} ({info['uses']}, {info['peas']} Peas) ran on {', '.join(info.get('hosts') or [info['host']])}")
    for note in summary["notes"]:
        out.print(f"note: {note}")
    out.print(f"\nReport: [bold]{summary['report']}[/bold]")
    out.print("Next: open the report in a browser; try [bold]--shards 4 --dim 8[/bold]; "
              "then [bold]jinad-fab hello chat[/bold] for a search page.")


@examples(
    "jinad-fab hello chat",
    "jinad-fab hello chat --port 9000 --json",
)
@command.command("chat")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535),
              help="The HTTP port of the page and its JSON API (on 127.0.0.1).")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--workdir", default="hello-chat", show_default=True, type=click.Path(file_okay=False),
              help="Where the fitted text model and the index go (created if missing).")
@click.option("--dim", default=256, show_default=True, type=click.IntRange(2, 2048),
              help="Dimensions kept of the TF-IDF space (capped at the number of FAQ entries, which "
                   "keeps scores exact cosines; fewer is LSA).")
@click.option("--shards", default=2, show_default=True, type=click.IntRange(1, 16), help="Shards of the index Pod.")
@click.option("--json", "as_json", is_flag=True, help="Print the ready line as JSON (url, counts, timings).")
@click.option("-v", "--verbose", is_flag=True, help="Show the Peas' logs too (start-up, libraries loaded, stop).")
def chat(port: int, host: str, workdir: str, dim: int, shards: int, as_json: bool, verbose: bool) -> None:
    """Serve a question/answer search page over the jinad-fab FAQ shipped in the package.

    A TF-IDF encoder (sublinear tf, word pairs and a small synonym list, fitted at start-up) feeds
    the built-in _index; the Flow's HTTP gateway serves the page and the JSON API it calls. Answers
    under a cosine of 0.15 are not shown: the page says there is no good match. Ctrl-C stops it.
    """
    from ...hello.chat import ChatOptions, serve_chat

    err = Console(stderr=True, highlight=False)
    opts = ChatOptions(workdir=workdir, port=port, host=host, dim=dim, shards=shards, verbose=verbose)

    def ready(info: dict) -> None:
        if as_json:
            click.echo(json.dumps(info), nl=True)
        else:
            Console(highlight=False).print(
                f"{info['pairs']} questions indexed in {info['timings']['total']:.1f} s.\n"
                f"Open [bold]{info['url']}[/bold] and ask something, e.g. \"how do I start a flow on a gpu host?\"\n"
                f"JSON API: POST {info['url']}search with {{\"data\": [{{\"text\": \"...\"}}]}}\n"
                "Ctrl-C stops it.")
        sys.stdout.flush()

    try:
        serve_chat(opts, ready, None if as_json else RichProgress(err))
    except KeyboardInterrupt:
        _interrupted()
