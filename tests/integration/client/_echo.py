"""An Executor that writes down what reached it: the endpoint, the parameters, its content fields."""

from jinad_fab import Executor, requests


class Echo(Executor):
    @requests(on="/custom")
    def custom(self, docs, parameters):
        self._note(docs, "/custom", parameters)

    @requests
    def anything(self, docs, parameters):
        self._note(docs, "default", parameters)

    def _note(self, docs, endpoint, parameters):
        for d in docs:
            d.tags["endpoint"] = endpoint
            d.tags["parameters"] = dict(parameters)
            d.tags["fields"] = [f for f in ("text", "blob", "buffer") if d.has(f)]
