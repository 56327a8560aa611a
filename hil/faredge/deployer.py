"""The far-edge-kubelet's job, done by the harness: put a service on a node.

``deploy`` fetches ``service.json`` for the node's platform (from a registry
reference, a local file or bytes), validates it before anything reaches the
device, picks the first free ``/9`` instance, then creates, writes the
package, installs, activates, and waits until Activation State is true. A step
that fails rolls back (the instance is deleted), so no orphan is left behind;
when the node vanished meanwhile (a reboot loses /9, which lives in RAM), the
rollback waits up to ``rollback_timeout`` for it to register again and checks
that the instance is gone, and the error says which it was.
Deploying the same name and version again is a no-op; another version of the
same service replaces the old one.

Lossy links: a step whose answer did not come back (``DeployStepError.uncertain``)
is tried again (``attempts`` in all) when repeating it is harmless (reads,
the package write, delete), and otherwise the device's state decides: a
create whose answer was lost is found in the node's /9 list and used, an
install or activate is checked in /9/{id} before it is sent again. Every
failure is one :class:`DeployError` naming the step, the node and the cause,
with the device's own reason (35003 Error) when it refused the package.
Before anything is sent, a module needing more memory than the node's
Memory Total is refused with both numbers.

It also takes a Kubernetes Pod or Deployment manifest: the container image is
the reference, and the node selector and tolerations are checked against the
labels FITA's node watcher would give the node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import yaml

from . import oci
from .channels import DeployChannel, DeployStepError, LwM2MChannel
from ..fita.labels import FAR_EDGE_TAINT, required_labels
from ..lwm2m.model import UpdateResult, UpdateState
from ..service.manifest import Manifest, ManifestError, parse_manifest

log = logging.getLogger("hil.deployer")

PLATFORM = "zephyr/arm/v7"


class DeployError(RuntimeError):
    """A deployment could not be done; nothing was left half-deployed.

    The message names the device, the step and the cause (with the device's
    own reason when it gave one); ``endpoint`` and ``step`` hold the first two.
    """

    def __init__(self, message: str, *, endpoint: str | None = None, step: str | None = None):
        super().__init__(message)
        self.endpoint = endpoint
        self.step = step


T = TypeVar("T")


def _result_name(result: Any) -> str:
    try:
        return UpdateResult(int(result)).name.lower().replace("_", " ")
    except ValueError:
        return "unknown result"


@dataclass
class Deployment:
    endpoint: str
    instance: int
    name: str
    version: int
    source: str  # reference, file or "<bytes>"
    digest: str | None = None
    reused: bool = False  # already there: nothing was sent
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    manifest: Manifest | None = field(default=None, compare=False, repr=False)  # what was deployed: inputs, mappings

    @property
    def path(self) -> str:
        return f"/9/{self.instance}"

    def describe(self) -> str:
        timing = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in self.steps.items())
        what = "already running" if self.reused else "deployed"
        return f"{self.name} v{self.version} {what} on {self.endpoint} at {self.path} ({timing})"


@dataclass
class PodSpec:
    """What the deployer reads from a Pod or Deployment manifest."""

    name: str
    image: str
    node_selector: dict[str, str]
    tolerations: list[dict[str, Any]]
    source: str


def load_pod_spec(path: Path | str) -> PodSpec:
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as e:
        raise DeployError(f"{path}: cannot read Kubernetes manifest: {e}") from None
    for doc in docs:
        kind = doc.get("kind")
        if kind == "Pod":
            spec = doc.get("spec") or {}
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        else:
            continue
        containers = spec.get("containers") or []
        if not containers or not containers[0].get("image"):
            raise DeployError(f"{path}: {kind} has no spec.containers[0].image")
        if len(containers) > 1:
            log.warning("%s: %d containers; an embServe node runs the first (%s)", path, len(containers), containers[0]["image"])
        return PodSpec(
            name=(doc.get("metadata") or {}).get("name", path.stem),
            image=containers[0]["image"],
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            tolerations=list(spec.get("tolerations") or []),
            source=str(path),
        )
    raise DeployError(f"{path}: no Pod or Deployment found (kinds: {', '.join(str(d.get('kind')) for d in docs) or 'none'})")


def tolerates_far_edge(tolerations: list[dict[str, Any]]) -> bool:
    key, value, effect = FAR_EDGE_TAINT
    for t in tolerations:
        if t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", key):
            return True
        if t.get("key") == key and t.get("value") == value:
            return True
    return False


class Deployer:
    """Deploys services to nodes registered at ``gateway``.

    ``via`` picks the path to the gateway: ``lwm2m`` (direct), ``mqtt``
    (needs ``broker``: host, port) or ``rest`` (needs ``rest_url``); or pass
    a ready ``channel``.
    """

    def __init__(
        self,
        gateway: Any,
        *,
        cache_dir: Path | str | None = None,
        via: str = "lwm2m",
        channel: DeployChannel | None = None,
        broker: tuple[str, int] | None = None,
        rest_url: str | None = None,
        platform: str = PLATFORM,
        activation_timeout: float = 10.0,
        auth: Any = None,
        rollback_timeout: float = 10.0,
        attempts: int = 3,
    ):
        self.gateway = gateway
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.platform = platform
        self.activation_timeout = activation_timeout
        self.rollback_timeout = rollback_timeout
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.attempts = attempts  # tries of a step whose answer did not come back
        self.auth = auth
        self.via = channel.name if channel else via
        self.channel = channel or self._make_channel(via, broker, rest_url)
        # The kubelet's NextGenGW mode numbers instances from 0, leshan mode from 1000.
        self.first_instance = 0 if self.via == "mqtt" else 1000
        self._locks: dict[str, asyncio.Lock] = {}
        #: called with every deployment done, reused or new, as it completes (test reports time it)
        self.listeners: list[Callable[[Deployment], None]] = []

    def _make_channel(self, via: str, broker: tuple[str, int] | None, rest_url: str | None) -> DeployChannel:
        if via == "lwm2m":
            return LwM2MChannel(self.gateway)
        if via == "mqtt":
            if broker is None:
                raise DeployError("deploy via mqtt needs the broker address (host, port)")
            from .channel_mqtt import MqttChannel

            return MqttChannel(*broker)
        if via == "rest":
            if rest_url is None:
                raise DeployError("deploy via rest needs the gateway's REST API base URL")
            from .channel_rest import RestChannel

            return RestChannel(rest_url)
        raise DeployError(f"unknown deploy path {via!r}: use lwm2m, mqtt or rest")

    async def __aenter__(self) -> "Deployer":
        await self.channel.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    # ----------------------------------------------------------------- fetch
    async def fetch(self, source: str | Path | bytes) -> tuple[bytes, str, str | None]:
        """service.json bytes, a description of where they came from, and the OCI digest."""
        if isinstance(source, bytes):
            return source, "<bytes>", None
        if isinstance(source, Path) or (isinstance(source, str) and Path(source).is_file()):
            p = Path(source)
            return p.read_bytes(), str(p), None
        resolved = await oci.resolve(str(source), self.platform, cache_dir=self.cache_dir, auth=self.auth)
        return resolved.service_json, str(source), resolved.digest

    @staticmethod
    def validate(service_json: bytes, source: str) -> Manifest:
        try:
            return parse_manifest(service_json, source=source)
        except ManifestError as e:
            raise DeployError(f"refusing to deploy: {e}") from None

    # ---------------------------------------------------------------- deploy
    async def deploy(self, source: str | Path | bytes, node: str, *, instance: int | None = None) -> Deployment:
        endpoint = getattr(node, "endpoint", node)
        steps: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            service_json, where, digest = await self.fetch(source)
        except oci.OciError as e:
            raise DeployError(f"cannot fetch {source} for {self.platform}: {e}", step="fetch") from None
        steps["fetch"] = time.perf_counter() - t0
        t = time.perf_counter()
        manifest = self.validate(service_json, where)
        steps["validate"] = time.perf_counter() - t
        try:
            await self._check_capabilities(endpoint, manifest)
            await self._check_memory(endpoint, manifest)
            lock = self._locks.setdefault(endpoint, asyncio.Lock())
            async with lock:  # instance choice and creation must not interleave per node
                ids = await self._retry(lambda: self.channel.instances(endpoint))
                existing = await self._find(endpoint, manifest.name, ids)
                for inst, info in existing:
                    if str(info.get(1)) == str(manifest.version) and info.get(12) is True and instance in (None, inst):
                        log.info("%s: %s v%s already active at /9/%d", endpoint, manifest.name, manifest.version, inst)
                        return self._done(Deployment(endpoint, inst, manifest.name, manifest.version, where, digest, True, steps, manifest))
                for inst, info in existing:
                    log.info("%s: replacing %s v%s at /9/%d", endpoint, manifest.name, info.get(1), inst)
                    await self._delete(endpoint, inst)
                used = set(ids) - {inst for inst, _ in existing}  # the replaced ones are gone
                chosen = instance if instance is not None else self._free_instance(used)
                deployment = Deployment(endpoint, chosen, manifest.name, manifest.version, where, digest, False, steps, manifest)
                await self._run_steps(deployment, service_json)
        except DeployStepError as e:
            raise DeployError(f"deploying {manifest.name} v{manifest.version} to {endpoint} failed: {e}",
                              endpoint=endpoint, step=e.step) from None
        log.info("%s", deployment.describe())
        return self._done(deployment)

    def _done(self, deployment: Deployment) -> Deployment:
        for listener in list(self.listeners):
            listener(deployment)
        return deployment

    async def _retry(self, step: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent step again when no answer came back; a device's refusal is final."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await step()
            except DeployStepError as e:
                if not e.uncertain or attempt == self.attempts:
                    raise
                log.info("%s: %s got no answer (attempt %d of %d), trying again: %s", e.endpoint, e.step, attempt, self.attempts, e.detail)
        raise AssertionError("unreachable")

    async def _check_capabilities(self, endpoint: str, manifest: Manifest) -> None:
        """Refuse a service whose data model needs a sensor the node does not list in /15."""
        needed = required_labels(manifest.data_model)
        if not needed:
            return
        try:
            labels = await self._retry(lambda: self.channel.labels(endpoint))
        except NotImplementedError:
            log.warning("%s: cannot read capabilities over %s; not checking %s", endpoint, self.via, needed)
            return
        except DeployStepError as e:
            raise DeployError(f"cannot read the capabilities of {endpoint}: {e}", endpoint=endpoint, step=e.step) from None
        missing = [k for k, v in needed.items() if labels.get(k) != v]
        if missing:
            have = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
            raise DeployError(f"{endpoint} cannot run {manifest.name}: its data model {list(manifest.data_model or [])}"
                              f" needs {', '.join(f'{k}=true' for k in missing)}, and the node has {have}",
                              endpoint=endpoint, step="check capabilities")

    async def _check_memory(self, endpoint: str, manifest: Manifest) -> None:
        """Refuse, before anything is sent, a module that needs more memory than the node has at all."""
        module = manifest.module
        if module is None:
            return
        needed = len(module.code) + module.ram_size  # what a loader places in RAM: code, LOT, data, bss
        try:
            total_kb = await self._retry(lambda: self.channel.memory_total_kb(endpoint))
        except NotImplementedError:
            log.warning("%s: cannot read the node's memory over %s; not checking the module's %d bytes", endpoint, self.via, needed)
            return
        if total_kb is not None and needed > total_kb * 1024:
            raise DeployError(
                f"refusing to deploy {manifest.name} v{manifest.version} to {endpoint}: its module needs {needed} bytes "
                f"(code {len(module.code)}, LOT {module.lot_size}, data {len(module.data)}, bss {module.bss_size}) "
                f"and the node reports {total_kb * 1024} bytes of memory in all (/3/0/21 Memory Total {total_kb} kB)",
                endpoint=endpoint, step="check memory")

    async def _run_steps(self, d: Deployment, service_json: bytes) -> None:
        ch, ep, inst = self.channel, d.endpoint, d.instance
        sent = False  # a create went out: whatever came back, the instance may exist
        try:
            t = time.perf_counter()
            sent = True
            await self._create(ep, inst)
            d.steps["create"] = time.perf_counter() - t
            t = time.perf_counter()
            await self._retry(lambda: ch.write_package(ep, inst, service_json))  # a Replace: idempotent
            d.steps["write"] = time.perf_counter() - t
            t = time.perf_counter()
            await self._install(ep, inst)
            d.steps["install"] = time.perf_counter() - t
            t = time.perf_counter()
            await self._activate(ep, inst)
            d.steps["activate"] = time.perf_counter() - t
        except DeployStepError as e:
            outcome = f"; {await self._rollback(ep, inst)}" if sent else ""
            raise DeployError(f"deploying {d.name} v{d.version} to {ep} at /9/{inst} failed: {e}{outcome}",
                              endpoint=ep, step=e.step) from None
        except DeployError as e:
            outcome = f"; {await self._rollback(ep, inst)}" if sent else ""
            raise DeployError(f"deploying {d.name} v{d.version} to {ep} at /9/{inst} failed: {ep}: {e.step} failed: {e}{outcome}",
                              endpoint=ep, step=e.step) from None

    async def _create(self, ep: str, inst: int) -> None:
        """Create /9/{inst}; when the answer is lost, the device's own list says whether it happened.

        The per-node lock is held and ``inst`` was free, so an instance found
        there now is the one this create made.
        """
        for attempt in range(1, self.attempts + 1):
            try:
                await self.channel.create(ep, inst)
                return
            except DeployStepError as e:
                if not e.uncertain and e.code not in (128, 133):  # 4.00/4.05: maybe "exists", from our lost first try
                    raise
                if inst in await self._retry(lambda: self.channel.instances(ep)):
                    log.info("%s: the answer to create /9/%d was lost, but the instance is there: using it", ep, inst)
                    return
                if not e.uncertain or attempt == self.attempts:
                    raise

    async def _install(self, ep: str, inst: int) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self.channel.install(ep, inst)
            except DeployStepError as e:
                if not e.uncertain:
                    raise
                info = await self._state_after(e, ep, inst)
                if info.get(7) == int(UpdateState.INSTALLED) or int(info.get(9) or 0) >= 50:
                    break  # it ran; its outcome is checked below
                if attempt == self.attempts:
                    raise
                continue
            break
        info = await self._retry(lambda: self.channel.read_instance(ep, inst))
        result = info.get(9)
        if result is not None and int(result) >= 50:
            raise DeployError(f"install reported Update Result {result} ({_result_name(result)})"
                              f"{await self._device_reason(ep, inst)}", endpoint=ep, step=f"install /9/{inst}/4")

    async def _activate(self, ep: str, inst: int) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                await self.channel.activate(ep, inst)
                break
            except DeployStepError as e:
                if not e.uncertain:
                    raise
                info = await self._state_after(e, ep, inst)
                if info.get(12) is True or int(info.get(9) or 0) >= 50 or attempt == self.attempts:
                    break  # it ran, or it is for _wait_active to say what became of it
        await self._wait_active(ep, inst)

    async def _state_after(self, failure: DeployStepError, ep: str, inst: int) -> dict[int, Any]:
        """/9/{inst} after a step whose answer was lost; the step's own failure when it cannot be read."""
        try:
            return await self._retry(lambda: self.channel.read_instance(ep, inst))
        except DeployStepError:
            raise failure from None

    async def _device_reason(self, ep: str, inst: int) -> str:
        """``: <the device's reason>`` from its 35003 Error, or "" when it gives none or cannot be read."""
        try:
            reason = await self._retry(lambda: self.channel.package_error(ep, inst))
        except (DeployStepError, NotImplementedError) as e:
            log.info("%s: could not read the device's reason for /9/%d: %s", ep, inst, e)
            return ""
        return f": {reason}" if reason else ""

    async def _wait_active(self, ep: str, inst: int) -> None:
        deadline = time.monotonic() + self.activation_timeout
        last: dict[int, Any] = {}
        while time.monotonic() < deadline:
            last = await self._retry(lambda: self.channel.read_instance(ep, inst))
            if last.get(12) is True:
                return
            result = last.get(9)
            if result is not None and int(result) >= 50:
                raise DeployError(f"activation failed, Update Result {result} ({_result_name(result)})"
                                  f"{await self._device_reason(ep, inst)}", endpoint=ep, step=f"activate /9/{inst}/10")
            await asyncio.sleep(0.02)
        raise DeployError(f"Activation State of /9/{inst} still not true after {self.activation_timeout:g} s (last read: {last})",
                          endpoint=ep, step=f"activate /9/{inst}/10")

    async def _delete(self, ep: str, inst: int) -> None:
        """Delete /9/{inst}; a 4.04 after an unanswered try means the first one did it."""
        tried = False
        for attempt in range(1, self.attempts + 1):
            try:
                await self.channel.delete(ep, inst)
                return
            except DeployStepError as e:
                if e.not_found and tried:
                    return
                if not e.uncertain or attempt == self.attempts:
                    raise
                tried = True

    async def _rollback(self, ep: str, inst: int) -> str:
        """Delete the instance of a failed deployment; says what became of it."""
        deadline = time.monotonic() + self.rollback_timeout
        while True:
            try:
                await self._delete(ep, inst)
                log.info("%s: rolled back /9/%d", ep, inst)
                return "the instance was removed"
            except DeployStepError as e:
                failure = e
            # The node may have lost the instance (a reboot empties /9) or be away
            # (rebooting, not registered again yet): what it announces decides.
            try:
                if inst not in await self.channel.instances(ep) and not await self._readable(ep, inst):
                    log.info("%s: /9/%d is gone without a delete (%s)", ep, inst, failure.detail)
                    return f"nothing is left: {ep} no longer has /9/{inst} (a reboot clears it)"
            except DeployStepError as e:
                failure = e
            if time.monotonic() >= deadline:
                log.error("%s: rollback of /9/%d failed: %s", ep, inst, failure)
                return (f"rolling back /9/{inst} failed within {self.rollback_timeout:g} s ({failure.detail});"
                        f" {ep} may still hold it")
            await asyncio.sleep(0.1)

    async def _readable(self, ep: str, inst: int) -> bool:
        """Whether the node answers a read of /9/{inst}: its registration's list may lag behind."""
        try:
            await self.channel.read_instance(ep, inst)
        except DeployStepError:
            return False
        return True

    def _free_instance(self, used: set[int]) -> int:
        inst = self.first_instance
        while inst in used:
            inst += 1
        return inst

    async def _find(self, endpoint: str, name: str, ids: list[int] | None = None) -> list[tuple[int, dict[int, Any]]]:
        """Instances holding the service ``name``; ``ids`` is a fresh listing of /9, when the caller has one.

        An instance that is gone by the time it is read (4.04) is skipped; one
        that cannot be read is an error, never taken for gone.
        """
        found = []
        if ids is None:
            ids = await self._retry(lambda: self.channel.instances(endpoint))
        for inst in ids:
            try:
                info = await self._retry(lambda inst=inst: self.channel.read_instance(endpoint, inst))
            except DeployStepError as e:
                if e.not_found:
                    continue
                raise
            if info.get(0) == name:
                found.append((inst, info))
        return found

    # ---------------------------------------------------------------- remove
    async def remove(self, node: str, what: int | str | Deployment) -> list[int]:
        """Delete a service by instance id, deployment or name; returns the ids removed."""
        endpoint = getattr(node, "endpoint", node)
        try:
            if isinstance(what, Deployment):
                ids = [what.instance]
            elif isinstance(what, int):
                ids = [what]
            else:
                ids = [inst for inst, _ in await self._find(endpoint, what)]
                if not ids:
                    raise DeployError(f"{endpoint}: no service named {what!r} is deployed", endpoint=endpoint, step="find")
            for inst in ids:
                await self._delete(endpoint, inst)
        except DeployStepError as e:
            raise DeployError(f"removing {what if not isinstance(what, Deployment) else what.name} from {endpoint} "
                              f"failed: {e}", endpoint=endpoint, step=e.step) from None
        return ids

    # ------------------------------------------------------------------- pods
    async def deploy_pod(self, pod_yaml: Path | str, node: str) -> Deployment:
        spec = load_pod_spec(pod_yaml)
        endpoint = getattr(node, "endpoint", node)
        labels = await self.channel.labels(endpoint)
        missing = {k: v for k, v in spec.node_selector.items() if labels.get(k) != v}
        if missing:
            have = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
            want = ", ".join(f"{k}={v}" for k, v in missing.items())
            raise DeployError(f"{spec.source}: node {endpoint} does not match the nodeSelector: it lacks {want} (node labels: {have})")
        if not tolerates_far_edge(spec.tolerations):
            key, value, effect = FAR_EDGE_TAINT
            raise DeployError(f"{spec.source}: the pod does not tolerate the far-edge taint {key}={value}:{effect}"
                              f" that every embServe node carries; add that toleration")
        return await self.deploy(spec.image, endpoint)

