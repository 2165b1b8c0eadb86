"""The ``docker`` runtime: one image and one network per workspace, each object a container.

Build: the workspace Dockerfile is rendered from ``templates/Dockerfile.j2`` (see
:mod:`jinad_fab.templating`), and sent with a build context of three parts (``Dockerfile``,
``wheels/``: a host-side wheelhouse with this package's own wheel, ``workspace/``: the files).
The context is a deterministic tar, so its sha256 is the image's content hash: the image is
tagged ``jinad-fab/<workspace id>:<hash>`` and a build whose tag already exists is skipped.
A ``.jinad`` ``dockerfile = ...`` builds the workspace's own Dockerfile with the workspace as
context instead. A ``.jinad`` ``run = ...`` starts that command as the workspace's project
container once the image is built, publishing ``ports``.

Every container, network and image carries labels: ``jinad.daemon`` (which daemon owns it),
``jinad.workspace``, ``jinad.id`` (the object or workspace id) and ``jinad.kind``. A restarted
daemon finds containers again by id and labels (:meth:`DockerRuntime.adopt`); :meth:`sweep`
removes what this daemon labelled but no record owns any more.

Containers: not privileged, all capabilities dropped, ``no-new-privileges``, the image's
non-root user, no Docker socket, optional CPU/memory limits, GPUs as an exact
``DeviceRequest``. Ports are published on ``publish_host`` (127.0.0.1 by default) with the same
number inside and out, so addresses the daemon hands out are valid on the host; a Flow's control
port (live changes, asked by this daemon alone) is published on the host's loopback only. Objects run in
the image's copy of the workspace (``/workspace``, part of the content hash; nothing of the
host's file tree is mounted but the object's own status directory and its log file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ... import gpus as _gpus
from ... import jinadfile, templating
from ...errors import BadConfig
from ...launch import handoff
from ...launch.command import MODULE as LAUNCH_MODULE
from . import wheelhouse
from .base import BuildError, BuildLog, LaunchSpec, ObjectStatus, Runtime, StartError, WorkspaceContext

LABEL_DAEMON = "jinad.daemon"
LABEL_WORKSPACE = "jinad.workspace"
LABEL_ID = "jinad.id"
LABEL_KIND = "jinad.kind"
IMAGE_REPO = "jinad-fab"
CONTAINER_WORKSPACE = "/workspace"
"""Where rendered images hold the workspace's files (copied at build time, part of the hash)."""
_STATUS_DIR = "/jinad/status"  # each object's own status directory, mounted from the host
_CONTAINER_BIND = "0.0.0.0"  # inside the container; what the host sees is decided by publishing
_LOOPBACK = "127.0.0.1"  # where ports only this daemon talks to are published (a Flow's control socket)
_LOG_TAIL = 25
_SHARED_STEP = "/tmp/jinad-wheels"
"""Marks the rendered Dockerfile's wheel steps: the last ones that hold no workspace file."""


@dataclasses.dataclass
class DockerOptions:
    """How this host runs workspace containers (from the daemon's settings)."""

    daemon_id: str | Callable[[], str] = "jinad"
    """Which daemon owns what this runtime labels (a callable is asked once, when first needed)."""
    docker_host: str | None = None
    """Engine address, e.g. ``unix:///var/run/docker.sock`` (``None``: that default)."""
    base_image: str | None = None
    """``FROM`` of rendered Dockerfiles; ``None``: ``python:<.jinad python>-slim``."""
    publish_host: str = "127.0.0.1"
    wheelhouse: bool = True
    pip_args: tuple[str, ...] = ()
    cpus: float | None = None
    memory: str | None = None
    """A Docker memory limit such as ``"2g"``."""
    build_timeout: float = 1800.0
    engine_timeout: float = 120.0
    cache_max_age: float = 7 * 24 * 3600.0
    """Seconds a cached layer no image uses is kept for the next build."""
    cache_max_bytes: int = 10 * 1024**3
    """Cached layers no image uses are pruned, oldest first, while they hold more than this."""


class DockerRuntime(Runtime):
    name = "docker"
    pods_grow = False  # a container publishes the ports fixed when it starts: new replicas' are unreachable

    def __init__(self, state_dir: pathlib.Path, options: DockerOptions | None = None):
        self.state_dir = state_dir
        self.options = options or DockerOptions()
        self._client: Any = None
        self._lock = threading.Lock()
        self._builds = 0  # builds running now: the cache they may have just matched is not pruned

    @classmethod
    def from_settings(cls, settings: Any) -> DockerRuntime:
        def opt(name: str, default: Any = None) -> Any:
            return getattr(settings, name, default)

        home = pathlib.Path(settings.home)
        options = DockerOptions(
            daemon_id=_daemon_id(home),
            docker_host=opt("docker_host"),
            base_image=opt("docker_base_image"),
            publish_host=opt("docker_publish_host") or opt("bind_host_for_objects") or "127.0.0.1",
            wheelhouse=bool(opt("docker_wheelhouse", True)),
            pip_args=tuple(opt("pip_index_args") or ()),
            cpus=opt("docker_cpus"),
            memory=opt("docker_memory"),
            build_timeout=float(opt("build_timeout", 1800.0)),
            cache_max_age=float(opt("docker_cache_max_age", 7 * 24 * 3600.0)),
            cache_max_bytes=int(opt("docker_cache_max_bytes", 10 * 1024**3)),
        )
        return cls(home / "runtimes" / cls.name, options)

    # ---- engine ---------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker

                self._client = docker.DockerClient(
                    base_url=self.options.docker_host or "unix:///var/run/docker.sock",
                    version="auto", timeout=int(self.options.engine_timeout),
                )
            return self._client

    def available(self) -> bool:
        try:
            with _engine(StartError, "ping the Docker engine"):
                return bool(self.client.ping())
        except StartError:
            return False

    @property
    def daemon_id(self) -> str:
        if callable(self.options.daemon_id):
            self.options.daemon_id = self.options.daemon_id()
        return self.options.daemon_id

    def _labels(self, workspace_id: str, object_id: str, kind: str) -> dict[str, str]:
        return {LABEL_DAEMON: self.daemon_id, LABEL_WORKSPACE: workspace_id,
                LABEL_ID: object_id, LABEL_KIND: kind}

    def _mine(self, **labels: str) -> list[str]:
        return [f"{LABEL_DAEMON}={self.daemon_id}"] + [f"{k}={v}" for k, v in labels.items()]

    # ---- build ----------------------------------------------------------------------------------

    def config(self, workspace: WorkspaceContext) -> jinadfile.JinadConfig:
        try:
            if workspace.config:
                known = {k: v for k, v in workspace.config.items() if v is not None}
                return jinadfile.JinadConfig.from_mapping(known)
            return jinadfile.load(workspace.root)
        except BadConfig as exc:
            raise BuildError(str(exc)) from exc

    def build(self, workspace: WorkspaceContext, log: BuildLog) -> dict[str, Any]:
        with self._lock:
            self._builds += 1
        try:
            return self._build(workspace, log)
        finally:
            with self._lock:
                self._builds -= 1

    def _build(self, workspace: WorkspaceContext, log: BuildLog) -> dict[str, Any]:
        config = self.config(workspace)
        scratch = self.state_dir / "build" / workspace.id
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            context = scratch / "context.tar"
            if config.dockerfile:
                if not (workspace.root / config.dockerfile).is_file():
                    raise BuildError(f".jinad names dockerfile {config.dockerfile!r}, which is not in the workspace")
                _write_context(context, [("", workspace.root)], {})
                dockerfile = config.dockerfile
                user = None
            else:
                text, wheel_dir = self._prepare_wheels(workspace, config, scratch, log)
                _write_context(context, [("wheels", wheel_dir), ("workspace", workspace.root)],
                               {"Dockerfile": text.encode()})
                dockerfile = "Dockerfile"
                user = f"{templating.CONTAINER_UID}:{templating.CONTAINER_UID}"
            digest = _sha256(context)
            tag = f"{IMAGE_REPO}/{workspace.id}:{digest[:24]}"
            image_id = self._image_id(tag)
            if image_id:
                log("jinad", f"image {tag} is up to date (content hash {digest[:12]}); not rebuilding")
                cached = True
            else:
                log("jinad", f"building image {tag}")
                image_id = self._build_image(context, dockerfile, tag, workspace.id, log)
                cached = False
            self._remove_stale_images(workspace.id, keep=image_id)
            network = self._ensure_network(workspace.id)
            info: dict[str, Any] = {"image": tag, "image_id": image_id, "content_hash": digest,
                                    "cached": cached, "network": network, "user": user}
            if config.run:
                info["run"] = self._start_project(workspace, config, info, log)
            return info
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def render_dockerfile(self, config: jinadfile.JinadConfig, has_requirements: bool) -> str:
        try:
            return templating.render_dockerfile(
                config, version=wheelhouse.version(), base_image=self.options.base_image,
                has_requirements=has_requirements, wheelhouse=self.options.wheelhouse,
            )
        except BadConfig as exc:
            raise BuildError(str(exc)) from exc

    def _prepare_wheels(self, workspace: WorkspaceContext, config: jinadfile.JinadConfig,
                        scratch: pathlib.Path, log: BuildLog) -> tuple[str, pathlib.Path]:
        wheels = scratch / "wheels"
        wheels.mkdir()
        own = wheelhouse.self_wheel(scratch / "self")
        requirements = None
        try:
            checked = jinadfile.read_requirements(workspace.root, config)
        except BadConfig as exc:
            raise BuildError(str(exc)) from exc
        if checked:
            requirements = wheels / "requirements.txt"
            requirements.write_text(checked)
        if self.options.wheelhouse:
            log("jinad", "collecting wheels on the host (binary wheels only)")
            req_copy = None
            if requirements is not None:
                req_copy = scratch / "requirements.txt"
                shutil.copy2(requirements, req_copy)
            wheelhouse.fill(wheels, self.state_dir / "wheels", own, req_copy, config.python, log,
                            pip_args=self.options.pip_args, timeout=self.options.build_timeout,
                            record=workspace.record_build)
        else:
            shutil.copy2(own, wheels / own.name)
        return self.render_dockerfile(config, requirements is not None), wheels

    def _build_image(self, context: pathlib.Path, dockerfile: str, tag: str, workspace_id: str,
                     log: BuildLog) -> str:
        tail: list[str] = []
        image_id = None
        error = None
        labels = self._labels(workspace_id, workspace_id, "image")
        with _engine(BuildError, "build the image"), context.open("rb") as fh:
            stream = self.client.api.build(
                fileobj=fh, custom_context=True, dockerfile=dockerfile, tag=tag, labels=labels,
                rm=True, forcerm=True, pull=False, decode=True, timeout=int(self.options.build_timeout),
            )
            for chunk in stream:
                if "stream" in chunk:
                    for line in chunk["stream"].splitlines():
                        if line.strip():
                            log("docker", line)
                            tail = (tail + [line])[-_LOG_TAIL:]
                if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    error = chunk["error"].strip()
                    log("docker", error)
        if error or not image_id:
            self._prune_dangling(workspace_id)
            raise BuildError(f"docker build failed: {error or 'no image produced'}\n--- build log tail ---\n"
                             + "\n".join(tail[-_LOG_TAIL:]))
        return image_id

    def _image_id(self, tag: str) -> str | None:
        import docker.errors

        try:
            with _engine(BuildError, "inspect an image"):
                return self.client.images.get(tag).id
        except BuildError as exc:
            if isinstance(exc.__cause__, docker.errors.ImageNotFound):
                return None
            raise

    def _remove_stale_images(self, workspace_id: str, keep: str) -> None:
        with _engine(BuildError, "list images"):
            images = self.client.images.list(filters={"label": self._mine(**{LABEL_WORKSPACE: workspace_id})})
        for image in images:
            if image.id != keep:
                self._remove_image(image.id, force=False)

    def _remove_image(self, image_id: str, force: bool = True) -> None:
        """Remove a workspace image and the layers that hold the workspace's own files.

        The layers below (base image, venv, the installed wheelhouse) are kept as the engine's
        build cache: they hold no workspace files, and the next workspace with the same wheels
        builds in seconds instead of reinstalling them.
        """
        import docker.errors

        failed = (docker.errors.DockerException, requests_exceptions().RequestException)
        try:
            history = self.client.api.history(image_id)
            self.client.images.remove(image_id, force=force, noprune=True)
        except failed:
            return
        for layer in history[1:]:  # newest first
            layer_id = layer.get("Id") or ""
            if _SHARED_STEP in (layer.get("CreatedBy") or "") and layer_id.startswith("sha256:"):
                self._keep_cache(layer_id)  # pruned by the sweep once unused past an age or a size
                return
            if not layer_id.startswith("sha256:") or layer.get("Tags"):
                return
            try:
                self.client.images.remove(layer_id, noprune=True)
            except failed:
                return  # another image is built on it: it is shared, and so is everything below

    # ---- build cache -----------------------------------------------------------------------------

    def _cache_file(self) -> pathlib.Path:
        return self.state_dir / "build-cache.json"

    def _cache(self) -> dict[str, float]:
        try:
            data = json.loads(self._cache_file().read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_cache(self, cache: dict[str, float]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._cache_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(self._cache_file())

    def _keep_cache(self, layer_id: str) -> None:
        """Record a layer this daemon left as build cache (its venv with the installed wheels) and
        when it was last given up by a workspace image."""
        with self._lock:
            cache = self._cache()
            cache[layer_id] = time.time()
            self._save_cache(cache)

    def prune_cache(self) -> list[str]:
        """Remove the cached layers this daemon left that no image is built on any more, once they
        are older than ``cache_max_age`` or, oldest first, while together over ``cache_max_bytes``.
        A layer some image still uses is kept (the engine refuses to remove it)."""
        import docker.errors

        with self._lock:
            if self._builds:
                # a build takes a cached layer by its id and starts its next step on it moments
                # later; the engine does not count that as a use, so removing it now fails the build
                return []
            cache = self._cache()
        if not cache:
            return []
        sizes: dict[str, int] = {}
        for layer_id in list(cache):
            try:
                history = self.client.api.history(layer_id)
            except docker.errors.ImageNotFound:
                cache.pop(layer_id)
                continue
            except (docker.errors.DockerException, requests_exceptions().RequestException):
                return []  # the engine is not answering: next time
            own = 0
            for row in history:  # this layer and those below it, down to a tagged image (the base)
                if row.get("Tags"):
                    break
                own += int(row.get("Size") or 0)
            sizes[layer_id] = own
        now, removed = time.time(), []
        total = sum(sizes.values())
        for layer_id in sorted(sizes, key=lambda k: cache[k]):  # oldest first
            if now - cache[layer_id] < self.options.cache_max_age and total <= self.options.cache_max_bytes:
                continue
            try:
                self.client.images.remove(layer_id)  # and its untagged parents, down to the base image
            except docker.errors.ImageNotFound:
                pass
            except (docker.errors.APIError, requests_exceptions().RequestException):
                continue  # an image is built on it again: in use, kept
            cache.pop(layer_id)
            total -= sizes[layer_id]
            removed.append(f"build cache {layer_id[7:19]} ({sizes[layer_id] / 1e6:.0f} MB)")
        with self._lock:
            current = self._cache()
            for layer_id in list(current):
                if layer_id not in cache and layer_id in sizes:
                    current.pop(layer_id)
            self._save_cache(current)
        return removed

    def _prune_dangling(self, workspace_id: str) -> None:
        with contextlib.suppress(Exception):
            self.client.images.prune(filters={"dangling": True,
                                              "label": self._mine(**{LABEL_WORKSPACE: workspace_id})})

    def _ensure_network(self, workspace_id: str) -> str:
        name = f"jinad-{workspace_id}"
        with _engine(BuildError, "create the workspace network"):
            found = self.client.networks.list(names=[name], filters={"label": self._mine()})
            if not any(n.name == name for n in found):
                self.client.networks.create(name, driver="bridge", check_duplicate=True,
                                            labels=self._labels(workspace_id, workspace_id, "network"))
        return name

    def _start_project(self, workspace: WorkspaceContext, config: jinadfile.JinadConfig,
                       info: dict[str, Any], log: BuildLog) -> dict[str, Any]:
        """The ``.jinad`` ``run`` command, as the workspace's long-running project container."""
        object_id = f"{workspace.id}-run"
        for old in self._containers(**{LABEL_ID: object_id}):
            _quietly(old.remove, force=True)
        ws = dataclasses.replace(workspace, build_info=info)
        container = self._create(ws, object_id, "run", list(config.run), ports=list(config.ports))
        with _engine(BuildError, "start the project container"):
            try:
                container.start()
            except Exception:
                _quietly(container.remove, force=True)
                raise
        ports = ", ".join(f"{self.options.publish_host}:{p}" for p in config.ports) or "no ports"
        log("jinad", f"project container {container.short_id} runs {' '.join(config.run)!r} ({ports})")
        return {"container_id": container.id, "ports": list(config.ports)}

    # ---- objects --------------------------------------------------------------------------------

    def create(self, workspace: WorkspaceContext, spec: LaunchSpec, log_path: pathlib.Path | None) -> Any:
        """Create (not start) the object's container: the exact request, open to inspection.

        The command is built here from the spec: the object binds every address inside the
        container (what the host sees is decided by publishing), finds the workspace at the
        image's copy of it, reports into its own mounted status directory, and every port it
        would pick at random gets a fixed host port now, so it can be published."""
        command, ports = self.command_for(spec)
        local = {ports[k] for k in spec.local_port_names()}
        return self._create(workspace, spec.object_id, spec.kind, command, env=spec.env,
                            ports=[p for p in dict.fromkeys(ports.values()) if p not in local],
                            local_ports=sorted(local), gpus=spec.gpus, log_path=log_path,
                            status_file=spec.status_file)

    def command_for(self, spec: LaunchSpec) -> tuple[list[str], dict[str, int]]:
        """The container's command for ``spec`` and the ports it will listen on (all fixed)."""
        local = spec.local_port_names()
        ports = {key: int(spec.ports.get(key) or 0)
                 or _free_port(_LOOPBACK if key in local else self.options.publish_host) for key in spec.port_names()}
        # a Flow's control socket binds everywhere inside too: publishing (on loopback) reaches no other address
        command = ["python", "-m", LAUNCH_MODULE,
                   *spec.argv(host=_CONTAINER_BIND, workspace=CONTAINER_WORKSPACE, ports=ports,
                              status_file=_status_inside(spec.status_file),
                              ctrl_host=_CONTAINER_BIND if spec.kind == "flow" else None)]
        return command, ports

    def _create(self, workspace: WorkspaceContext, object_id: str, kind: str, command: list[str], *,
                env: Mapping[str, str] | None = None, ports: list[int] | None = None,
                local_ports: list[int] | None = None, gpus: Any = None,
                log_path: pathlib.Path | None = None, status_file: pathlib.Path | None = None) -> Any:
        import docker.types

        image = workspace.build_info.get("image")
        network = workspace.build_info.get("network")
        if not image or not network:
            raise StartError(f"workspace {workspace.id} has no built image")
        user = workspace.build_info.get("user")
        uid = int(user.split(":")[0]) if user else None
        volumes: dict[str, dict[str, str]] = {}
        env = dict(env or {})
        env["JINAD_BIND_HOST"] = _CONTAINER_BIND
        ports = list(ports or [])
        entrypoint = None
        if status_file is not None:
            # The container writes its status into a directory of its own (it sees no other
            # object's files); the path the daemon reads is a symlink to it.
            own = self._object_dir(object_id)
            own.mkdir(parents=True, exist_ok=True)
            _give(own, uid)
            volumes[str(own)] = {"bind": _STATUS_DIR, "mode": "rw"}
            status_file.parent.mkdir(parents=True, exist_ok=True)
            status_file.unlink(missing_ok=True)
            status_file.symlink_to(own / status_file.name)
            sealed = handoff.sealed_path(status_file)
            if sealed.exists():  # secrets handed to the object: it reads and deletes them there
                os.replace(sealed, own / sealed.name)
                _give(own / sealed.name, uid)
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.touch(exist_ok=True)
            _give(log_path, uid)
            volumes[str(log_path)] = {"bind": "/jinad/object.log", "mode": "rw"}
            # The container appends to the same log file as the daemon: it survives a daemon restart.
            entrypoint = ["/bin/sh", "-c", 'exec "$@" >>/jinad/object.log 2>&1', "jinad"]
        for path in volumes:
            if "docker.sock" in path:
                raise StartError("refusing to mount the Docker socket into a workspace container")
        try:
            requested = _gpus.parse(gpus)
        except BadConfig as exc:
            raise StartError(str(exc)) from exc
        device_requests = None
        gpu_kwargs = _gpus.device_request_kwargs(requested)
        if gpu_kwargs:
            device_requests = [docker.types.DeviceRequest(**gpu_kwargs)]
        kwargs: dict[str, Any] = dict(
            image=image, command=command, entrypoint=entrypoint, name=f"jinad-{object_id}",
            labels=self._labels(workspace.id, object_id, kind), environment=env,
            working_dir=CONTAINER_WORKSPACE if workspace.build_info.get("user") else None,
            network=network, ports={**{f"{p}/tcp": (self.options.publish_host, p) for p in ports},
                                    **{f"{p}/tcp": (_LOOPBACK, p) for p in local_ports or ()}},
            volumes=volumes, privileged=False, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            device_requests=device_requests, detach=True, init=True, stdin_open=False, tty=False,
        )
        if self.options.cpus:
            kwargs["nano_cpus"] = int(float(self.options.cpus) * 1e9)
        if self.options.memory:
            kwargs["mem_limit"] = self.options.memory
        if user:
            kwargs["user"] = user
        with _engine(StartError, f"create the {kind} container"):
            return self.client.containers.create(**kwargs)

    def start(self, workspace: WorkspaceContext, spec: LaunchSpec, log_path: pathlib.Path) -> dict[str, Any]:
        container = self.create(workspace, spec, log_path)
        with _engine(StartError, f"start the {spec.kind} container"):
            try:
                container.start()
            except Exception:
                _quietly(container.remove, force=True)
                raise
        return {"runtime": self.name, "container_id": container.id, "name": container.name,
                "labels": self._labels(workspace.id, spec.object_id, spec.kind)}

    def _object_dir(self, object_id: str) -> pathlib.Path:
        return self.state_dir / "objects" / object_id

    def _get(self, handle: dict[str, Any]) -> Any:
        import docker.errors

        cid = handle.get("container_id")
        if not cid:
            return None
        try:
            container = self.client.containers.get(cid)
        except docker.errors.NotFound:
            return None
        except docker.errors.DockerException:
            return None
        want = (handle.get("labels") or {}).get(LABEL_ID)
        if want and container.labels.get(LABEL_ID) != want:
            return None
        return container

    def status(self, handle: dict[str, Any]) -> ObjectStatus:
        container = self._get(handle)
        if container is None:
            return ObjectStatus(alive=False, exit_code=handle.get("exit_code"), detail="container is gone")
        state = container.attrs.get("State", {})
        if state.get("Running"):
            return ObjectStatus(alive=True)
        code = state.get("ExitCode")
        detail = f"container {state.get('Status', 'exited')} with code {code}"
        if state.get("OOMKilled"):
            detail += " (out of memory)"
        if state.get("Error"):
            detail += f": {state['Error']}"
        return ObjectStatus(alive=False, exit_code=code, detail=detail)

    def adopt(self, handle: dict[str, Any]) -> ObjectStatus:
        return self.status(handle)

    def stop(self, handle: dict[str, Any], timeout: float) -> ObjectStatus:
        container = self._get(handle)
        if container is None:
            return self.status(handle)
        with contextlib.suppress(Exception):
            container.stop(timeout=max(1, int(round(timeout))))
        with contextlib.suppress(Exception):
            container.reload()
        st = self.status(handle)
        _quietly(container.remove, force=True)
        self._forget(container.labels.get(LABEL_ID, ""))
        return ObjectStatus(alive=False, exit_code=st.exit_code, detail=st.detail)

    def _forget(self, object_id: str) -> None:
        if object_id and "/" not in object_id:
            shutil.rmtree(self._object_dir(object_id), ignore_errors=True)

    # ---- clean-up -------------------------------------------------------------------------------

    def _containers(self, **labels: str) -> list[Any]:
        with _engine(StartError, "list containers"):
            return self.client.containers.list(all=True, filters={"label": self._mine(**labels)})

    def remove_workspace(self, workspace: WorkspaceContext) -> None:
        for container in self._containers(**{LABEL_WORKSPACE: workspace.id}):
            _quietly(container.remove, force=True)
            self._forget(container.labels.get(LABEL_ID, ""))
        with _engine(StartError, "remove the workspace network"):
            for network in self.client.networks.list(filters={"label": self._mine(**{LABEL_WORKSPACE: workspace.id})}):
                _quietly(network.remove)
            for image in self.client.images.list(filters={"label": self._mine(**{LABEL_WORKSPACE: workspace.id})}):
                self._remove_image(image.id)
        self._prune_dangling(workspace.id)
        shutil.rmtree(self.state_dir / "build" / workspace.id, ignore_errors=True)

    def sweep(self, live_objects: set[str], live_workspaces: set[str]) -> list[str]:
        """Remove what this daemon labelled but no record owns; return what was removed.

        A container is kept while its object id (or, for a project container, its workspace)
        is live; networks and images while their workspace is.
        """
        removed = []
        for container in self._containers():
            labels = container.labels
            owner = labels.get(LABEL_ID, "")
            if labels.get(LABEL_KIND) in ("run", "image"):
                # a project container, or a build step's intermediate container (the image's labels
                # reach it): it lives as long as its workspace, so a sweep never breaks a running build
                alive = labels.get(LABEL_WORKSPACE) in live_workspaces
            else:
                alive = owner in live_objects
            if not alive:
                _quietly(container.remove, force=True)
                self._forget(owner)
                removed.append(f"container {container.name}")
        with _engine(StartError, "sweep networks and images"):
            for network in self.client.networks.list(filters={"label": self._mine()}):
                if (network.attrs.get("Labels", {}).get(LABEL_WORKSPACE) not in live_workspaces
                        and _quietly(network.remove)):
                    removed.append(f"network {network.name}")
            for image in self.client.images.list(filters={"label": self._mine()}):
                if (image.labels or {}).get(LABEL_WORKSPACE) not in live_workspaces:
                    self._remove_image(image.id)
                    removed.append(f"image {image.short_id}")
        return removed + self.prune_cache()

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.close()
                self._client = None


@contextlib.contextmanager
def _engine(error: type[Exception], action: str) -> Iterator[None]:
    """The one place Docker SDK and transport errors become this package's errors."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except docker.errors.APIError as exc:
        reason = exc.explanation or str(exc)
        raise error(f"Docker engine refused to {action}: {reason}") from exc
    except docker.errors.DockerException as exc:
        raise error(f"could not {action}: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        raise error(f"the Docker engine did not answer while trying to {action}: {exc}") from exc


def requests_exceptions() -> Any:
    import requests.exceptions

    return requests.exceptions


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> bool:
    """Best-effort removal: gone already, or still in use, is not an error during clean-up.

    Whether ``fn`` did its work: a network still in use (or one the engine miscounts as in use,
    moby/moby#42119) stays, and a sweep must not report it as removed."""
    import docker.errors
    import requests.exceptions

    try:
        fn(*args, **kwargs)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return False
    return True


def _daemon_id(home: pathlib.Path) -> Callable[[], str]:
    """The daemon's id, read from its home when first needed (the app writes it after building
    the runtimes); a daemon without one is told apart by its home directory."""

    def read() -> str:
        try:
            text = (home / "daemon-id").read_text().strip()
        except OSError:
            text = ""
        return text or "jinad-home-" + hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]

    return read


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return sock.getsockname()[1]


def _status_inside(status_file: pathlib.Path) -> str:
    """Where an object in a container writes the status file the daemon reads at ``status_file``."""
    return f"{_STATUS_DIR}/{status_file.name}"


def _give(path: pathlib.Path, uid: int | None) -> None:
    """Let the container's user write ``path`` (bind mounts keep host ownership)."""
    if uid is None:
        return
    if os.geteuid() == 0:
        os.chown(path, uid, -1)
    else:  # a non-root daemon cannot chown: make it group/other-writable instead
        path.chmod(path.stat().st_mode | (0o777 if path.is_dir() else 0o666))


def _write_context(target: pathlib.Path, trees: list[tuple[str, pathlib.Path]], extra: dict[str, bytes]) -> None:
    """A reproducible build context: sorted names, fixed owner and mtime, no symlinks followed."""
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as tar:
        def add_bytes(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        for name, data in sorted(extra.items()):
            add_bytes(name, data)
        for prefix, root in trees:
            if prefix:
                info = tarfile.TarInfo(prefix)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                tar.addfile(info)
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root).as_posix()
                name = f"{prefix}/{rel}" if prefix else rel
                if path.is_symlink():
                    continue  # a symlink could point out of the workspace
                if path.is_dir():
                    info = tarfile.TarInfo(name)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
                elif path.is_file():
                    add_bytes(name, path.read_bytes(), 0o755 if os.access(path, os.X_OK) else 0o644)


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


