"""labgrid's client session, on a thread of its own, and what every use of it needs.

* :class:`CoordinatorSession`: labgrid's ``ClientSession`` on a thread and
  event loop of its own, so it lives for a whole test run while every test
  has its own event loop; other threads and loops call into it.
* :func:`coordinator_address`: the explicit address, else ``LG_COORDINATOR``,
  else the environment file's ``coordinator_address`` option, else labgrid's
  default ``127.0.0.1:20408``.
* ``ExternalPowerPort``: a resource embserve-hil adds to labgrid's factory.
* The guardian (``python -m hil.targets.labgrid_session guard COORDINATOR
  TOKEN...``): started by :class:`hil.targets.labgrid_place.PlaceLease`
  before it acquires a place; when its input ends without ``released`` (the
  run died, SIGKILL included), it releases every place our reservations hold
  and cancels them. labgrid itself keeps a place acquired when its client
  vanishes.

labgrid is the optional ``embserve-hil[labgrid]`` extra: without it the
module imports, and :func:`require_labgrid` names the extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .errors import TargetError

try:
    import attr
    import grpc
    from labgrid import Environment, target_factory
    from labgrid.remote.client import ClientSession
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
    from labgrid.resource import Resource

    LABGRID_MISSING: str | None = None
except ImportError as _e:  # the extra is optional: everything else works without it
    LABGRID_MISSING = f"labgrid is not installed ({_e.name}): pip install 'embserve-hil[labgrid]'"

T = TypeVar("T")
DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
CONNECT_TIMEOUT = 10.0


class PlaceError(TargetError):
    """A place cannot be had or used; the message is one line naming the place."""


def require_labgrid() -> None:
    if LABGRID_MISSING:
        from ..infra.process import MissingBinaryError

        raise MissingBinaryError(LABGRID_MISSING)


if not LABGRID_MISSING:
    @target_factory.reg_resource
    @attr.s(eq=False)
    class ExternalPowerPort(Resource):
        """A bench's power switch as three commands, exported like any resource.

        labgrid's ``ExternalPowerDriver`` runs them where the place is used
        (so they must work from the test runner: a lab's PDU CLI, an SSH
        command to the bench host, or the QEMU lab's bench control).
        """

        cmd_on = attr.ib(validator=attr.validators.instance_of(str))
        cmd_off = attr.ib(validator=attr.validators.instance_of(str))
        cmd_cycle = attr.ib(default=None, validator=attr.validators.optional(attr.validators.instance_of(str)))


def coordinator_address(explicit: str | None = None, env_file: str | os.PathLike[str] | None = None) -> str:
    if explicit:
        return explicit
    if os.environ.get("LG_COORDINATOR"):
        return os.environ["LG_COORDINATOR"]
    if env_file:
        require_labgrid()
        return Environment(str(env_file)).config.get_option("coordinator_address", DEFAULT_COORDINATOR)
    return DEFAULT_COORDINATOR


class CoordinatorSession:
    """labgrid's ``ClientSession`` on a thread of its own (see the module docs)."""

    def __init__(self, address: str, *, connect_timeout: float = CONNECT_TIMEOUT):
        require_labgrid()
        self.address = address
        self.connect_timeout = connect_timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"labgrid {address}", daemon=True)
        self.client: ClientSession | None = None

    def start(self) -> "CoordinatorSession":
        self._thread.start()
        try:
            self.run(self._connect, timeout=self.connect_timeout + 1.0)
        except BaseException:
            self.close()
            raise
        return self

    async def _connect(self) -> None:
        client = ClientSession(self.address, self.loop)
        try:
            await asyncio.wait_for(client.start(), self.connect_timeout)
        except (Exception, asyncio.TimeoutError) as e:
            with contextlib.suppress(Exception):
                await client.stop()
            with contextlib.suppress(Exception):
                await client.close()
            why = "no answer" if isinstance(e, asyncio.TimeoutError) else str(e).removeprefix("Error: ")
            raise PlaceError(f"labgrid coordinator at {self.address} is not reachable ({why}); is labgrid-coordinator"
                             f" running there, and is LG_COORDINATOR / --lg-coordinator right?") from None
        self.client = client

    @property
    def user(self) -> str:
        """Who the coordinator thinks we are: ``host/user`` (LG_HOSTNAME, LG_USERNAME override them)."""
        assert self.client is not None
        return f"{self.client.gethostname()}/{self.client.getuser()}"

    @property
    def connected(self) -> bool:
        return self.client is not None and not self.client.stopping.is_set()

    def run(self, coroutine: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``coroutine()`` on the session's loop from another thread; its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine(), self.loop)  # type: ignore[arg-type]
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    async def call(self, coroutine: Callable[[], Awaitable[T]]) -> T:
        """Same as :meth:`run`, awaited from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine(), self.loop))  # type: ignore[arg-type]

    def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and self.loop.is_running():
            async def stop() -> None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 5.0)
                with contextlib.suppress(Exception):
                    await client.close()

            with contextlib.suppress(Exception):
                self.run(stop, timeout=10.0)
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread.is_alive():
            self._thread.join(5.0)
        if not self.loop.is_running() and not self.loop.is_closed():
            self.loop.close()


# -- the guardian: releases the place if the run dies without releasing it ------------------


def guard(address: str, tokens: list[str]) -> int:
    """Wait for ``released`` or end of input; on a bare end of input, release what our reservations hold."""
    line = sys.stdin.buffer.readline()
    if line.strip() == b"released":
        return 0
    session = CoordinatorSession(address).start()
    try:
        async def cleanup() -> list[str]:
            client = session.client
            assert client is not None
            released = []
            for name, place in list(client.places.items()):
                if place.reservation in tokens and place.acquired == session.user:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await client.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=name))
                        released.append(name)
            for token in tokens:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await client.stub.CancelReservation(pb.CancelReservationRequest(token=token))
            await client.sync_with_coordinator()
            return released

        released = session.run(cleanup, timeout=30.0)
        print(f"labgrid guardian: the run ended without releasing; released {', '.join(released) or 'nothing'}")
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "guard":
        sys.exit(guard(sys.argv[2], sys.argv[3:]))
    print("usage: python -m hil.targets.labgrid_session guard COORDINATOR TOKEN...", file=sys.stderr)
    sys.exit(2)
