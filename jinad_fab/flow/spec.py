"""The Pod and Flow options (see :mod:`jinad_fab.spec`, where they are defined once).

They live beside ``schemas`` rather than in ``flow`` so that the daemon and the daemon client,
which must not import the Flow builder, validate ``POST /pods`` bodies against the same fields.
"""

from ..spec import (
           FlowSpec,
           PeaOptions,
           PodOptions,
           PodSpec,
           did_you_mean,
           parse,
           refuse_unknown,
           secret_fields,
)

__all__ = ["FlowSpec", "PeaOptions", "PodOptions", "PodSpec", "did_you_mean", "parse", "refuse_unknown",
           "secret_fields"]
