"""Every option of a Pea, a Pod and a Flow, listed once: its type, its default and what it means.

The models nest by where an option is used::

    PeaOptions   what one Pea process needs: its Executor, env, GPUs, how long it may take to start
      PodOptions   + how many Peas and how requests reach them (parallel/replicas, shards, polling)
        PodSpec      + what only the Flow uses: name, needs, host (a jinad host), uploads, token
    FlowSpec     the Flow's own options (protocol, ports, timeouts, ...)

Everything else reads these models instead of keeping its own list of keys: ``Flow(...)`` and
``Flow.add(...)`` validate with :class:`FlowSpec` / :class:`PodSpec`, the YAML codec checks each
``pods:`` entry against :class:`PodSpec`, a Pod on a jinad host sends the :class:`PodOptions`
fields, the daemon's ``POST /pods`` body (``schemas.PodCreate``) derives from :class:`PodOptions`,
and ``jinad-fab pod`` makes its command-line options from it. Adding an option is one field here
plus the code that uses it.

This module sits beside ``errors`` and ``schemas``: it imports only pydantic and ``errors``, so the
daemon, the daemon client and the Flow can all import it (``jinad_fab.flow.spec`` re-exports it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from . import gpus
from .errors import BadConfig

__all__ = ["PeaOptions", "PodOptions", "PodSpec", "FlowSpec", "parse", "refuse_unknown", "secret_fields",
           "did_you_mean"]

_SECRET = {"secret": True}
_REMOTE = {"only": "remote"}  # means something only for a Pod on a jinad host
_LOCAL = {"only": "local"}  # means something only for a Pod this Flow runs itself

PollingMode = Literal["all", "any", "id"]
Polling = Literal["all", "any"] | dict[str, PollingMode]
Gpus = StrictInt | str | list[StrictInt | str]


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # the same "did you mean" whoever validates: Flow.add, the YAML codec, the daemon's POST /pods
        if isinstance(data, Mapping):
            unknown = _unknown(cls, data)
            if unknown:
                raise ValueError(unknown)
        return data


class PeaOptions(_Spec):
    """What one Pea process needs, wherever it runs (here, or on a jinad host)."""

    uses: str | dict[str, Any] = Field(
        "_pass", description="the Executor: a built-in (_pass, _logforward, _index), a registered class name, "
                             "a .yml file, inline YAML, or a mapping {jtype, with, metas, py_modules}; "
                             "Flow.add also takes an Executor subclass defined in a .py file")
    uses_with: dict[str, Any] | None = Field(
        None, description="keyword arguments of the Executor's __init__ (override its YAML `with:`)")
    uses_metas: dict[str, Any] | None = Field(
        None, description="Executor metas (name, workspace, ...) overriding its YAML `metas:`")
    uses_requests: dict[str, str] | None = Field(
        None, description="bind endpoints to the Executor's methods by name, over its @requests "
                          "(and its YAML `requests:`), e.g. {'/search': 'encode'}")
    py_modules: list[str] | None = Field(
        None, description="Python files to import first so the Executor class they define is found")
    env: dict[str, str] | None = Field(
        None, description="environment variables of the Pod's processes (added to the Flow's `env`)")
    gpus: Gpus | None = Field(
        None, description="GPUs for the Pod: 'all', a count (2) or device ids ('0,2' or [0, 2]); on a jinad "
                          "host the runtime hands them over (docker: a device request), for a local Pod its "
                          "processes get CUDA_VISIBLE_DEVICES")
    timeout_ready: float | None = Field(
        None, gt=0, description="seconds the Pod's processes may take to be ready (default: the Flow's "
                                "timeout_ready)")
    # issue 15 (_index dumps): a starting _index replica loads its shard's part of a dump
    dump_path: str | None = Field(
        None, description="_index only: a directory written by its /dump endpoint; each starting shard "
                          "replaces its store with its own part of it (<dump_path>/<shard id>), once")


    @field_validator("gpus")
    @classmethod
    def _gpus(cls, value: Any) -> Any:
        gpus.parse(value)  # refused here, before any process starts; kept as the user wrote it
        return value


class PodOptions(PeaOptions):
    """What the processes of a Pod need: its Peas' options, how many Peas, and how requests reach them."""

    parallel: StrictInt = Field(
        1, ge=1, le=64, validation_alias=AliasChoices("parallel", "replicas"),
        description="replicas: Peas that share the load (the Gateway plans each request onto the least loaded); "
                    "`replicas` is accepted as another name")
    shards: StrictInt = Field(
        1, ge=1, le=64, description="shards: each holds part of the data; a head Pea routes every request "
                                    "(see polling) and the next Pod merges their answers")
    polling: Polling | None = Field(
        None, description="how a sharded Pod's head routes requests: 'all' (every shard sees every request), "
                          "'any' (each Document goes to one shard, chosen by its id, so update/delete find it "
                          "again), or per endpoint {'/search': 'all', '*': 'any'}; default: /search and /dump to all "
                          "shards, everything else by id")

    # --- issue 15 (live changes): what happens when a replica's process exits ---
    restart: Literal["on-failure", "never"] | None = Field(
        None, description="when a replica's process exits: 'on-failure' starts a new one and wires it in (with "
                          "exponential backoff, at most `restart_limit` times per `restart_window`), 'never' "
                          "leaves the Pod without it (a Pod with no replica left fails the Flow); default: "
                          "'never', and 'on-failure' for a Flow run by jinad")
    restart_limit: StrictInt | None = Field(
        None, ge=1, le=1000, description="restarts allowed per `restart_window` before the Pod is given up "
                                         "(default 5)")
    restart_window: float | None = Field(
        None, gt=0, description="seconds over which `restart_limit` counts restarts (default 60)")

    # --- issue 16 (spread Pods): one part of a Pod whose shards run on several hosts ---
    shard_of: tuple[StrictInt, StrictInt] | None = Field(
        None, description="[shard id, shards]: these Peas are that shard of a Pod spread over several hosts "
                          "(set by a spread Pod for its parts; the shard's store and dumps are named by it)")


# issue 16 (spread Pods) ------------------------------------------------------------------------
class SpreadPart(_Spec):
    """Some Peas of a spread Pod on one daemon: ``replicas`` replicas of shard ``shard``."""

    host: str = Field(description="the part's jinad daemon ('10.0.0.5:8000', 'https://gpu1:8443')")
    replicas: StrictInt = Field(1, ge=1, le=64, description="replicas of the shard on that daemon")
    shard: StrictInt | None = Field(None, ge=0, description="which shard (none: the Pod has one)")
    gpu_ids: list[StrictInt] | None = Field(None, description="GPU ids there, `gpus` per replica in turn")


class SpreadHost(_Spec):
    """A daemon of a spread Pod's group, and the GPU ids placement left free there."""

    host: str = Field(description="a jinad daemon of the group ('10.0.0.5:8000')")
    free_gpu_ids: list[StrictInt] | None = Field(None, description="GPU ids placement left free there")


class Spread(_Spec):
    """Where a spread Pod's Peas run (see :mod:`jinad_fab.flow.spread`)."""

    parts: list[SpreadPart] = Field(min_length=1, description="where its replicas run, by daemon and shard")
    hosts: list[SpreadHost] | None = Field(
        None, description="its group's daemons, where a live scale or a lost host's replicas go")
# end issue 16 -----------------------------------------------------------------------------------


class PodSpec(PodOptions):
    """One Pod of a Flow: everything ``Flow.add(...)`` and a ``pods:`` entry of Flow YAML take."""

    name: str | None = Field(None, description="the Pod's name in the Flow (default pod0, pod1, ...)")
    needs: str | list[str] | None = Field(
        None, description="the Pods whose output this one takes ('gateway' for the Flow's input); default: "
                          "the Pod added before it")
    host: str | None = Field(
        None, description="run the Pod on the jinad daemon of this host ('gpu1:8000', 'https://gpu1:8443'); "
                          "its files are uploaded into a workspace there")
    # issue 14 (TLS to every daemon): how the Flow talks to `host`'s jinad
    ca_file: str | None = Field(
        None, json_schema_extra=_REMOTE, description="CA bundle (PEM; relative to the Flow) to check an https:// `host`'s certificate "
                          "with (default: the Flow's `ca_file`, else the system's); a `host` without a scheme is "
                          "then reached over https")
    tls: StrictBool | None = Field(
        None, json_schema_extra=_REMOTE, description="reach `host`'s jinad over HTTPS (true) or plain HTTP (false) when `host` "
                          "names no scheme (default: the Flow's `tls`; https when a `ca_file` applies)")
    port_expose: StrictInt | None = Field(
        None, ge=1, le=65535, json_schema_extra=_REMOTE, description="the port of `host`'s jinad daemon when `host` does not name one")
    upload_files: list[str] | None = Field(
        None, json_schema_extra=_REMOTE, description="more files to upload into the remote Pod's workspace (paths relative to the Flow)")
    quiet_remote_logs: StrictBool | None = Field(
        None, json_schema_extra=_REMOTE, description="do not stream this remote Pod's log back (default: the Flow's setting)")
    workspace: str | None = Field(
        None, json_schema_extra=_LOCAL,
        description="the Executor's workspace directory (default: the Flow's `workspace`); on a jinad host "
                    "the daemon's workspace is the Pod's")
    token: str | None = Field(
        None, repr=False, json_schema_extra={**_SECRET, **_REMOTE},
        description="the token of `host`'s jinad daemon (default: the Flow's token); never written to YAML")

    # issue 17 (exports to Docker Compose and Kubernetes): what an engine reserves for each Pea
    resources: dict[Literal["cpu", "memory"], StrictInt | float | str] | None = Field(
        None, description="what each Pea of the Pod asks an engine to reserve in an export, e.g. "
                          "{cpu: '500m', memory: '1Gi'} (compose: deploy.resources.reservations, Kubernetes: "
                          "resources.requests); a Flow run by this machine or by jinad ignores it")

    # issue 16 (fleet Flows): where a stateless remote Pod goes when its host is lost --------------
    fallback_hosts: list[str] | None = Field(
        None, json_schema_extra=_REMOTE,
        description="other jinad daemons that may run this Pod when `host` stops answering for the Flow's "
                    "`lost_after` seconds (in order); `flow up` fills it with the rest of the Pod's group "
                    "for Pods that keep no data (not `_index`)")
    spread: Spread | None = Field(
        None, json_schema_extra=_REMOTE,
        description="a Pod whose replicas and shards run on several jinad daemons (written by `flow up` / "
                    "`render flow` when placement spreads it): its parts, and the daemons of its group where a "
                    "live scale or a lost host's replicas go; `host` names the first part's daemon")
    # end issue 16 ---------------------------------------------------------------------------------

    @model_validator(mode="after")
    def _where_it_runs(self) -> PodSpec:
        # an option that cannot apply where the Pod runs is refused, not silently ignored
        remote = self.host is not None
        for field in sorted(self.model_fields_set):
            extra = type(self).model_fields[field].json_schema_extra
            only = extra.get("only") if isinstance(extra, dict) else None
            if only is None or getattr(self, field) is None or (only == "remote") == remote:
                continue
            if only == "remote":
                raise ValueError(f"{field} applies to a Pod on a jinad host (give host='gpu1:8000'); "
                                 "this Pod runs here")
            raise ValueError(f"{field} applies to a Pod this Flow runs itself; on host={self.host!r} the "
                             "daemon's workspace is the Pod's")
        return self


class FlowSpec(_Spec):
    """The options of a Flow itself: ``Flow(...)`` and the ``with:`` block of Flow YAML."""

    protocol: Literal["native", "http"] = Field(
        "native", description="the protocol clients use by default: 'native' (ZeroMQ) or 'http' (JSON)")
    host: str = Field("127.0.0.1", description="the address the Gateway and local Pods bind to")
    port_expose: StrictInt | None = Field(
        None, ge=1, le=65535, description="the Gateway's port for `protocol` (default: a free port)")
    port_http: StrictInt | None = Field(None, ge=1, le=65535, description="the Gateway's HTTP port")
    port_native: StrictInt | None = Field(None, ge=1, le=65535, description="the Gateway's native port")
    name: str | None = Field(None, description="a name for the Flow, shown in its log and its repr")
    timeout_ready: float = Field(60.0, gt=0, description="seconds every Pod and the Gateway may take to start")
    timeout: float | None = Field(None, gt=0, description="seconds a client waits for each answer")
    prefetch: StrictInt | None = Field(None, ge=1, description="requests a client keeps in flight")
    env: dict[str, str] | None = Field(None, description="environment variables of every local Pod")
    workspace: str | None = Field(None, description="the default workspace directory of every Pod's Executor")
    static_dir: str | None = Field(None, description="a directory the Gateway serves over HTTP at /static/")
    log_json: StrictBool = Field(False, description="processes log JSON lines instead of text")
    keep_workspace: StrictBool = Field(
        False, description="keep the workspaces made on jinad hosts for remote Pods after the Flow stops")
    quiet_remote_logs: StrictBool = Field(False, description="do not stream remote Pods' logs back")
    # issue 14 (TLS to every daemon): how remote Pods talk to their hosts' jinad
    ca_file: str | None = Field(
        None, json_schema_extra=_REMOTE, description="CA bundle (PEM; relative to the Flow) to check https:// jinad hosts' certificates with")
    tls: StrictBool | None = Field(
        None, description="reach the jinad of remote Pods whose `host` names no scheme over HTTPS (true) or plain "
                          "HTTP (false); default: https when a `ca_file` applies")
    token: str | None = Field(
        None, repr=False, json_schema_extra=_SECRET,
        description="the token of the jinad daemons the Flow's remote Pods use; never written to YAML")
    # issue 14 (CURVE between hosts) -----------------------------------------------------------
    secure: StrictBool | None = Field(
        None, description="encrypt and authenticate the ZeroMQ traffic between the Flow's Pods and its Gateway "
                          "with CURVE (keys made per Flow, handed to remote Pods through their daemon); "
                          "default: on when a Pod runs on another host, off when every Pod is on this one")
    # end issue 14 -------------------------------------------------------------------------------
    # issue 16 (fleet Flows) -------------------------------------------------------------------
    lost_after: float = Field(
        10.0, gt=0, description="seconds a remote Pod's daemon may not answer before the Pod is LOST (and, with "
                                "`fallback_hosts`, started on another host and wired in)")
    # end issue 16 -------------------------------------------------------------------------------


S = TypeVar("S", bound=BaseModel)


def names(model: type[BaseModel]) -> dict[str, str]:
    """Every key the model accepts (field names and their other names) -> its field name."""
    out: dict[str, str] = {}
    for field, info in model.model_fields.items():
        out[field] = field
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    out[choice] = field
        elif isinstance(alias, str):
            out[alias] = field
    return out


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields never written to YAML nor logged (tokens)."""
    return frozenset(k for k, info in model.model_fields.items()
                     if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret"))


def did_you_mean(word: str, known: Iterable[str]) -> str | None:
    """The known key closest to a misspelt one (``paralel`` -> ``parallel``), if any is close enough."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


# Jina 1.x/2.x (and JinaD) options spelled differently here: the refusal names what to write instead
JINA_SPELLINGS = {
    "port_jinad": "host='<host>:<port>' (one address names the daemon, https:// for TLS)",
    "restful": "protocol='http'",
    "uses_before": "a Pod of its own that this one needs (needs=...)",
    "uses_after": "a Pod of its own that needs this one",
}


def _unknown(model: type[BaseModel], keys: Iterable[Any], extra: Iterable[str] = ()) -> str | None:
    accepted = set(names(model)) | set(extra)
    unknown = [k for k in keys if k not in accepted]
    if not unknown:
        return None
    parts = []
    for k in unknown:
        if k in JINA_SPELLINGS:
            parts.append(f"{k!r} (a Jina 1.x/2.x option; here write {JINA_SPELLINGS[k]})")
            continue
        guess = did_you_mean(str(k), accepted) if isinstance(k, str) else None
        parts.append(f"{k!r} (did you mean {guess!r}?)" if guess else repr(k))
    plural = "s" if len(unknown) > 1 else ""
    return f"unknown argument{plural} {', '.join(parts)}; known: {', '.join(sorted(accepted))}"


def refuse_unknown(model: type[BaseModel], keys: Iterable[Any], what: str, extra: Iterable[str] = ()) -> None:
    """BadConfig naming every key the model does not take, each with the closest known key."""
    unknown = _unknown(model, keys, extra)
    if unknown:
        raise BadConfig(f"{what}: {unknown}")


def parse(model: type[S], data: Mapping[str, Any], what: str) -> S:
    """Validate ``data`` against a spec model; every problem becomes one BadConfig naming the keys."""
    refuse_unknown(model, data, what)
    by_field: dict[str, list[str]] = {}
    for key, field in names(model).items():
        if key in data:
            by_field.setdefault(field, []).append(key)
    both = [keys for keys in by_field.values() if len(keys) > 1]
    if both:
        raise BadConfig(f"{what}: {' and '.join(repr(k) for k in both[0])} name the same option; give one")
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise BadConfig(f"{what}: {explain(exc, model, data)}") from exc


def explain(exc: ValidationError, model: type[BaseModel], data: Mapping[str, Any] | None = None) -> str:
    """Pydantic's errors as one line per option: what was given and what the option takes."""
    lines: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if not loc:  # a check across options: its message says it all
            lines[err.get("msg", "")] = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            continue
        field = loc[0]
        if field in lines:
            continue  # a union reports once per member; the option's description says what it takes
        info = model.model_fields.get(field)
        takes = f" ({info.description})" if info is not None and info.description else ""
        given = err.get("input")
        label = field
        value = data.get(field) if data is not None else None
        if len(loc) > 1 and isinstance(value, Mapping) and loc[1] in value:
            label += f"[{loc[1]!r}]"  # the key inside a mapping, e.g. env['A']
        lines[field] = f"{label}={given!r}: {err.get('msg', 'invalid')}{takes}"
    return "; ".join(lines.values())

