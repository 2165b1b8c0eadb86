"""Process start-up at the edge: what ``jinad`` (or a container) runs to start a Flow, Pod or Pea.

* ``python -m jinad_fab.launch {pea,gateway,pod,flow,zygote} ...`` — the entry point (:mod:`.__main__`);
* :mod:`.serve` — serving a Flow from YAML until SIGTERM;
* :mod:`.zygote` — a warm parent that forks those processes for a workspace.

The runtime below knows nothing of this package; the daemon imports it to start objects.
"""
