"""Request and response models of the jinad REST API, shared by the daemon and its clients.

Schema families follow one pattern per resource: ``<Thing>Create`` is what a client sends,
``<Thing>Public`` is what the daemon answers, ``<Thing>List`` wraps a list route's ``items``.
Ids are typed: ``jworkspace-<hex>``, ``jflow-<hex>``, ``jpod-<hex>``, ``jpea-<hex>``; a path or
query parameter with the wrong shape is refused with 422 before any handler runs.
"""

from __future__ import annotations

import enum
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from typing_extensions import TypedDict

from .spec import PeaOptions, PodOptions

_HEX = "[0-9a-f]{32}"

WorkspaceId = Annotated[str, StringConstraints(pattern=rf"^jworkspace-{_HEX}$")]
FlowId = Annotated[str, StringConstraints(pattern=rf"^jflow-{_HEX}$")]
PodId = Annotated[str, StringConstraints(pattern=rf"^jpod-{_HEX}$")]
PeaId = Annotated[str, StringConstraints(pattern=rf"^jpea-{_HEX}$")]
AnyId = Annotated[str, StringConstraints(pattern=rf"^j(workspace|flow|pod|pea)-{_HEX}$")]

# A path inside a workspace, as the daemon's path check (daemon/workspaces.py safe_relpath) takes it:
# relative, no '..' part, no backslash or control character, not 'C:...', not only dots and
# slashes; at most 63 characters here (so no part can pass 255 bytes), which the document says and
# the check itself does not need. Only documented: pydantic's regex engine has no look-ahead.
WORKSPACE_PATH_PATTERN = (r"^(?![\s\S]:)(?![./]*$)(?![\s\S]*(^|/)\.\.(/|$))"
                          r"[^/\\\x00-\x1f][^\\\x00-\x1f]{0,62}$")
WorkspacePath = Annotated[str, WithJsonSchema({"type": "string", "pattern": WORKSPACE_PATH_PATTERN,
                                               "description": "a path relative to the workspace root"})]

Kind = Literal["workspace", "flow", "pod", "pea"]
KINDS: tuple[str, ...] = ("workspace", "flow", "pod", "pea")


def new_id(kind: str) -> str:
    """A fresh typed id, e.g. ``new_id("flow") -> "jflow-3f2a..."``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    return f"j{kind}-{uuid.uuid4().hex}"


def kind_of(object_id: str) -> str:
    """The kind encoded in a typed id (``jpod-...`` -> ``pod``)."""
    prefix = object_id.split("-", 1)[0]
    kind = prefix[1:] if prefix.startswith("j") else ""
    if kind not in KINDS:
        raise ValueError(f"not a jinad id: {object_id!r}")
    return kind


class WorkspaceState(str, enum.Enum):
    PENDING = "PENDING"
    BUILDING = "BUILDING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    DELETING = "DELETING"


class ObjectState(str, enum.Enum):
    """Life cycle of a Flow, Pod or Pea: STARTING -> RUNNING -> STOPPED, or FAILED with a reason."""

    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    FAILED = "FAILED"


# ---- health and status -------------------------------------------------------------------------


class Health(BaseModel):
    version: str
    daemon_id: str
    uptime: float = Field(description="seconds since the daemon started")
    runtimes: list[str] = Field(description="runtimes available on this host, e.g. ['process', 'docker']")
    gpus: list[dict[str, Any]] = Field(default_factory=list, description="GPUs seen (index, name, memory)")


class HostResources(BaseModel):
    cpu_count: int
    cpu_percent: float
    load_average: list[float]
    memory_total: int
    memory_available: int
    disk_total: int
    disk_free: int
    gpus: list[dict[str, Any]] = Field(default_factory=list)


class Status(BaseModel):
    daemon_id: str
    resources: HostResources
    counts: dict[str, dict[str, int]] = Field(description="kind -> state -> number of objects")


# ---- workspaces --------------------------------------------------------------------------------


class WorkspacePublic(BaseModel):
    id: WorkspaceId
    state: WorkspaceState
    runtime: str
    created: float
    updated: float
    files: list[str] = Field(default_factory=list, description="paths relative to the workspace root")
    config: dict[str, Any] = Field(default_factory=dict, description="the parsed .jinad file")
    error: str | None = None
    build_log_tail: list[str] = Field(default_factory=list)
    objects: list[str] = Field(default_factory=list, description="ids of live Flows/Pods/Peas in it")


class WorkspaceList(BaseModel):
    items: list[WorkspacePublic]


# ---- flows, pods, peas --------------------------------------------------------------------------


class GatewayAddress(BaseModel):
    host: str
    http_port: int | None = None
    native_port: int | None = None


_Z85Key = Annotated[str, StringConstraints(min_length=40, max_length=40)]


class CurveKeysCreate(BaseModel):
    """A Pod's CURVE keys, made by whoever starts its Flow (Z85 text, see ``jinad_fab.runtime.curve``).

    The daemon hands them to the Pod's processes sealed (:mod:`jinad_fab.launch.handoff`); they never
    reach its database, a log or argv, and no response carries them."""

    server_public: _Z85Key
    server_secret: SecretStr = Field(min_length=40, max_length=40)
    public: _Z85Key
    secret: SecretStr = Field(min_length=40, max_length=40)
    allowed: list[_Z85Key] = Field(max_length=1024, description="client public keys the Pod's sockets admit")

    def plain(self) -> dict[str, Any]:
        return {"server_public": self.server_public, "server_secret": self.server_secret.get_secret_value(),
                "public": self.public, "secret": self.secret.get_secret_value(), "allowed": list(self.allowed)}


_GPU_ID = "[A-Za-z0-9_:.-]{1,128}"


UsesMapping = TypedDict("UsesMapping", {  # "with" is a keyword: the functional form keeps the key
    "jtype": str, "with": dict[str, Any], "metas": dict[str, Any], "py_modules": list[str], "requests": dict[str, str],
}, total=False)
"""``uses`` as a mapping: the keys an Executor config has (any other is refused)."""
UsesMapping.__pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[attr-defined]


ApiGpus = (Annotated[StrictInt, Field(ge=0)]
           | Annotated[str, StringConstraints(
               pattern=rf"^\s*([Aa][Ll][Ll]|(device=)?\s*{_GPU_ID}(\s*,\s*{_GPU_ID})*)\s*$")]
           | Annotated[list[Annotated[StrictInt, Field(ge=0)]
                            | Annotated[str, StringConstraints(pattern=rf"^\s*{_GPU_ID}\s*$")]],
                       Field(min_length=1, max_length=64)])
"""``gpus`` as the API takes it: the forms :func:`jinad_fab.gpus.parse` accepts, spelled out so
the OpenAPI document says what is accepted."""


class _ApiShapes(BaseModel):
    """What the REST API takes where the Pod spec is lax in ways JSON Schema cannot say."""

    @model_validator(mode="before")
    @classmethod
    def _whole_numbers(cls, data: Any) -> Any:
        # JSON has one number type: 3.0 is an integer to JSON Schema (and to OpenAPI clients)
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key, value in data.items():
            if isinstance(value, float) and value.is_integer() and key in cls.model_fields:
                if _takes_int(cls.model_fields[key].annotation):
                    out[key] = int(value)
        if isinstance(out.get("gpus"), list):
            out["gpus"] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in out["gpus"]]
        return out


def _takes_int(annotation: Any) -> bool:
    import typing

    if annotation is int:
        return True
    return any(_takes_int(a) for a in typing.get_args(annotation) if a is not type(None))


class PeaCreate(_ApiShapes, PeaOptions):
    """JSON args of a Pea: its options (:class:`~jinad_fab.spec.PeaOptions`) plus how it is wired.

    ``host`` and ``workspace`` are decided by the daemon (bind address and workspace root).
    """

    uses: str | UsesMapping = Field(
        "_pass", description="the Executor: a built-in (_pass, _logforward, _index), a registered class name, "
                             "a .yml file in the workspace, inline YAML, or a mapping {jtype, with, metas, "
                             "py_modules, requests}")
    gpus: ApiGpus | None = Field(
        None, description="GPUs: 'all', a count (2) or device ids ('0,2', 'device=0,2' or [0, 2])")
    py_modules: list[WorkspacePath] | None = Field(
        None, description="Python files of the workspace to import first (the Executor classes they define)")

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "pea"
    port_in: StrictInt = Field(0, ge=0, le=65535)
    port_ctrl: StrictInt = Field(0, ge=0, le=65535)
    num_parts: StrictInt = Field(1, ge=1, le=1024, description="messages per request to join (upstream Pods/shards)")
    upstream: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=256, description="the Pods this one needs, in order (joins follow it)")
    curve: CurveKeysCreate | None = Field(
        None, description="CURVE keys of the Flow for this object's sockets (issue 14); never stored")
    lease: float | None = Field(
        None, gt=0, le=86400, description="seconds the object may go without its Flow renewing it (GET with "
                                          "renew=true); past that the daemon stops it (issue 16: a Pod re-placed "
                                          "elsewhere while its host was cut off never runs twice); none: forever")


class PodCreate(PodOptions, PeaCreate):
    """JSON args of a Pod: every :class:`~jinad_fab.spec.PodOptions` field plus how it is wired."""

    uses: str | UsesMapping = PeaCreate.model_fields["uses"]  # the API's forms, not PodOptions' looser ones
    gpus: ApiGpus | None = PeaCreate.model_fields["gpus"]
    py_modules: list[WorkspacePath] | None = PeaCreate.model_fields["py_modules"]

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "pod"
    changeable: StrictBool = Field(
        False, description="run the Pod's Peas under a Pod host even when it has one Pea, so replicas can be "
                           "added, replaced and restarted while it runs (PUT /pods/{id}; a Flow asks it for "
                           "its Pods, issue 15); false: one Pea is served in the Pod's own process")


class _ObjectPublic(BaseModel):
    id: str
    workspace_id: WorkspaceId
    state: ObjectState
    created: float
    updated: float
    error: str | None = None
    pid: int | None = None


class FlowCreate(BaseModel):
    """The optional JSON body of ``POST /flows``: tokens of the daemons the Flow's remote Pods run on.

    Keys are daemon addresses as the Flow names them (``gpu1:8000``); values never reach the
    database, a log or argv (see :mod:`jinad_fab.launch.handoff`). A daemon's configured peers
    (``jinad --peer``) fill in the addresses a request leaves out.
    """

    peers: dict[Annotated[str, StringConstraints(max_length=300)], SecretStr] = Field(
        default_factory=dict, max_length=256, description="daemon address -> its bearer token")


class FlowPublic(_ObjectPublic):
    id: FlowId
    filename: str
    gateway: GatewayAddress | None = None
    pods: list[dict[str, Any]] = Field(
        default_factory=list, description="each Pod of the Flow: name, and for a remote Pod its daemon and id")
    peers: list[str] = Field(
        default_factory=list, description="the other daemons (host:port) the Flow was handed a token for; never a token")
    live: dict[str, Any] | None = Field(
        None, description="a running Flow's replicas and restarts per Pod (`pods`), and its last live change "
                          "(`change`: kind, pod, state running|done|failed, one event per replica)")


class FlowChange(BaseModel):
    """The body of ``PUT /flows/{id}``: one live change of a running Flow (issue 15).

    ``scale`` takes ``replicas``; ``rolling_update`` takes ``uses``, ``uses_with`` and/or ``dump_path``
    (replicas are replaced one at a time, each new one ready before an old one leaves); ``dump``
    takes ``path`` (every shard of an ``_index`` Pod writes its part there). Paths are relative to
    the Flow's workspace. A field that does not fit is answered 400 naming it; a change asked while
    another runs, 409.
    """

    model_config = {"extra": "forbid"}

    kind: Literal["scale", "rolling_update", "dump"]
    pod: Annotated[str, StringConstraints(max_length=64)]
    replicas: int | None = Field(None, ge=1, le=64, description="scale: the replicas each shard of the Pod gets")
    uses: Annotated[str, StringConstraints(max_length=300)] | None = Field(
        None, description="rolling_update: the new Executor (a name, or a YAML file of the workspace)")
    uses_with: dict[str, Any] | None = Field(None, description="rolling_update: the Executor's new arguments")
    dump_path: Annotated[str, StringConstraints(max_length=300)] | None = Field(
        None, description="rolling_update: new replicas of an _index load this dump (a workspace path)")
    path: Annotated[str, StringConstraints(max_length=300)] | None = Field(
        None, description="dump: the directory (in the workspace) each shard writes its part under")
    wait: bool = Field(True, description="answer when the change is done (false: at once, with 202)")


class PodPublic(_ObjectPublic):
    id: PodId
    args: dict[str, Any] = Field(default_factory=dict)
    ports: dict[str, Any] = Field(default_factory=dict)
    in_addresses: list[str] = Field(
        default_factory=list, description="where senders connect now: after a restarted head or a live change, "
                                          "its new addresses")
    ctrl_address: str | None = None
    live: dict[str, Any] | None = Field(
        None, description="after PUT /pods/{id}: the Pod's new `in_target` (its replicas by id), `members` per "
                          "replica set and one event per replica started or stopped")


class PeaPublic(PodPublic):
    id: PeaId  # type: ignore[assignment]


class FlowList(BaseModel):
    items: list[FlowPublic]


class PodList(BaseModel):
    items: list[PodPublic]


class PeaList(BaseModel):
    items: list[PeaPublic]


# ---- deployments (fleet Flows kept by a daemon) -------------------------------------------------

DeploymentName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class DeploymentLockTake(BaseModel):
    """The body of ``PUT /deployments/{name}/lock``: a controller's lease on changing the deployment."""

    owner: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{8,64}$")] = Field(
        description="the run holding it (renewing with the same owner extends its lease)")
    holder: dict[Annotated[str, StringConstraints(max_length=32)],
                 Annotated[str, StringConstraints(max_length=300)] | int] = Field(
        default_factory=dict, max_length=8, description="who: user, host, pid, command (shown to the others)")
    ttl: float = Field(60.0, ge=1, le=3600, description="seconds the lease lasts unless renewed")


class DeploymentLockPublic(BaseModel):
    name: str
    owner: str
    holder: dict[str, Any] = Field(default_factory=dict)
    since: float
    expires: float = Field(description="when the lease ends unless renewed (the daemon's clock)")
    expires_in: float


class DeploymentWrite(BaseModel):
    """What a controller records after `flow up`: the spec it applied and where everything runs.

    Never a secret: the spec is the concrete Flow YAML (tokens are never written to YAML)."""

    spec: str = Field(max_length=1_000_000, description="the concrete Flow YAML (every Pod's host filled in)")
    spec_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")]
    placement: list[dict[str, Any]] = Field(default_factory=list, max_length=1024)
    gateway_host: str | None = Field(None, description="the inventory host running the Gateway")
    daemons: dict[str, str] = Field(default_factory=dict, description="inventory host -> daemon address")
    flow_id: FlowId | None = None
    workspace_id: WorkspaceId | None = None
    filename: str = "flow.yml"
    files_hash: str | None = Field(None, max_length=128, description="the hash of the uploaded files alone")
    note: str = Field("", max_length=2000)


class Release(BaseModel):
    release: int
    spec_hash: str
    spec: str
    placement: list[dict[str, Any]] = Field(default_factory=list)
    workspace_id: str | None = None
    filename: str = "flow.yml"
    files_hash: str | None = None
    created: float
    note: str = ""


class DeploymentCopy(BaseModel):
    """A copy of a deployment's record kept by another daemon involved (issue 16), so the
    deployment is still found, and its Gateway reported LOST, when the Gateway's host is lost.
    A copy owns nothing on the daemon keeping it: deleting it stops nothing."""

    gateway_host: str = Field(description="the inventory host whose daemon keeps the record and runs the Gateway")
    release: int
    spec_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16,128}$")]
    spec: str = Field(max_length=1_000_000)
    placement: list[dict[str, Any]] = Field(default_factory=list, max_length=1024)
    daemons: dict[str, str] = Field(default_factory=dict)
    flow_id: FlowId | None = None
    gateway: dict[str, Any] = Field(default_factory=dict, description="the Gateway's ports when the copy was made")
    pods: list[dict[str, Any]] = Field(default_factory=list, max_length=1024,
                                       description="each Pod's name, daemon and id when the copy was made")
    releases: list[Release] = Field(default_factory=list, max_length=64)


class DeploymentPublic(BaseModel):
    name: str
    release: int = Field(description="the release running now (1, 2, ...)")
    spec_hash: str
    spec: str
    placement: list[dict[str, Any]] = Field(default_factory=list)
    gateway_host: str | None = None
    daemons: dict[str, str] = Field(default_factory=dict)
    flow_id: str | None = None
    workspace_id: str | None = None
    filename: str = "flow.yml"
    files_hash: str | None = None
    created: float
    updated: float
    flow: FlowPublic | None = Field(None, description="the Flow as this daemon sees it now")
    releases: list[Release] = Field(default_factory=list, description="the kept releases, oldest first")
    copy_of: str | None = Field(None, description="set on a copy: the host whose daemon keeps the record")
    gateway: dict[str, Any] = Field(default_factory=dict, description="a copy: the Gateway's ports when made")
    pods: list[dict[str, Any]] = Field(default_factory=list, description="a copy: the Pods when made")


class DeploymentList(BaseModel):
    items: list[DeploymentPublic]


class ErrorBody(BaseModel):
    detail: Any


# ---- issue 14: token rotation (PUT /token) -------------------------------------------------------

TOKEN_PATTERN = r"^[A-Za-z0-9._~+/=-]{24,512}$"


class TokenRotate(BaseModel):
    """``PUT /token``: the token the daemon requires from now on. Until ``DELETE /token/previous``
    it also accepts the one it replaced, so clients can switch over without a request refused."""

    token: str = Field(..., pattern=TOKEN_PATTERN, repr=False,
                       description="24 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -")


class TokenRotated(BaseModel):
    persisted: bool = Field(..., description="the token file the daemon reads at start now holds the new token")
    previous_accepted: bool = Field(..., description="the replaced token is still accepted until DELETE /token/previous")
