"""The first-run demos behind ``jinad-fab hello``: image search on scikit-learn's bundled digits
(:mod:`.images`) and a question/answer search page (:mod:`.chat`).

They use jinad-fab the way a user would: public names (``Flow``, ``Document``, ``Executor``), the
built-in ``_index`` and the deploy placement code; never the runtime's internals. Nothing here is
downloaded: the digits ship inside scikit-learn, the chat corpus inside this package.
"""
