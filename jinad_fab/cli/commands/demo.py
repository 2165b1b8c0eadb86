"""`jinad-fab demo`: a small local Flow, offline, to see the runtime work end to end."""

from __future__ import annotations

import time

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ...document import Document, DocumentArray
from ...flow import Flow
from ._common import examples


@examples(
    "jinad-fab demo                        # 20000 Documents through a 3-Pod Flow on this machine",
    "jinad-fab demo --docs 1000 --parallel 4 --protocol http",
)
@click.command("demo")
@click.option("--docs", "n_docs", default=20_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="How many Documents to send through the Flow.")
@click.option("--request-size", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="Documents per request.")
@click.option("--parallel", default=2, show_default=True, type=click.IntRange(1, 32),
              help="Replicas of the middle Pod.")
@click.option("--protocol", type=click.Choice(["native", "http"]), default="native", show_default=True)
@click.option("-v", "--verbose", is_flag=True,
              help="Show the Peas' logs (one line per request from the `_logforward` Pod, start-up and stop).")
def command(n_docs: int, request_size: int, parallel: int, protocol: str, verbose: bool) -> None:
    """Start a 3-Pod Flow on this machine, push Documents with embeddings through it and report.

    The Flow is `_logforward` -> `_pass` (PARALLEL replicas) -> `_pass`, with a Gateway in front;
    every Pod is its own process talking ZeroMQ on loopback. Nothing is downloaded. Quiet but for
    the summary (and warnings); -v shows the Peas' logs.
    """
    console = Console()
    rng = np.random.default_rng(0)
    docs = DocumentArray(Document(text=f"demo document {i}", tags={"i": i}) for i in range(n_docs))
    docs.embeddings = rng.random((n_docs, 64), dtype=np.float32)
    # the Peas' log level travels in their environment; warnings and errors always show
    flow = (Flow(protocol=protocol, env={"JINAD_FAB_LOG_LEVEL": "INFO" if verbose else "WARNING"})
            .add(name="log", uses="_logforward")
            .add(name="work", uses="_pass", parallel=parallel)
            .add(name="out", uses="_pass"))
    t0 = time.perf_counter()
    with console.status("starting the Flow (every Pod is a process)..."):
        flow.start()
    started = time.perf_counter() - t0
    try:
        got = DocumentArray()
        with Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("index", total=n_docs)
            t1 = time.perf_counter()
            flow.index(docs, request_size=request_size, return_results=False,
                       on_done=lambda r: (got.extend(r.docs), progress.advance(task, len(r.docs))))
            sent = time.perf_counter() - t1
    finally:
        flow.close()
    # answers arrive as replicas finish them, so compare by id
    back = {d.id: d for d in got}
    same = len(back) == n_docs and all(
        d.id in back and back[d.id].text == d.text and np.array_equal(back[d.id].embedding, d.embedding)
        for d in docs)
    table = Table(title="jinad-fab demo: a local Flow", show_header=False)
    table.add_row("Pods", f"log -> work (x{parallel}) -> out, gateway {protocol}")
    table.add_row("start-up", f"{started:.2f} s")
    table.add_row("Documents", f"{n_docs:,} in requests of {request_size}")
    table.add_row("throughput", f"{n_docs / sent:,.0f} docs/s")
    table.add_row("round trip", "every Document came back intact" if same else "[red]MISMATCH[/red]")
    console.print(table)
    console.print("Next: [bold]jinad-fab --help[/bold], or build your own: "
                  "Flow().add(uses=MyExecutor).add(uses='_index')")
    if not same:
        raise click.ClickException("the Documents that came back differ from those sent")
