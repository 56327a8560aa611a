"""What the gateway remembers across restarts: registrations and deployments, in an embedded database.

``Gateway(database="gateway.sqlite")`` keeps every registration (endpoint,
id, the device's address, lifetime, object links...) and every software
package it put on a device (``/9`` instance, name, version, how far it got).
A restarted gateway loads the registrations whose lifetime has not run out
and can reach those devices at once, at the address they registered from,
instead of saying "not registered" until each one's next Update; the
devices' Updates to their old registration ids are accepted, and a device
that registers anew meanwhile simply replaces its old registration.

The database is SQLite (Python's own ``sqlite3``). The schema is plain SQL
(no SQLite-only types or features; upserts as ``INSERT ... ON CONFLICT ...
DO UPDATE``, which PostgreSQL reads too), so a server database can take it
later through any DB-API connection. Writes are batched and done in a worker
thread: a thousand registrations arriving at once cost the event loop
nothing but a dictionary update each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..lwm2m.link import Link, format_links, parse_links
from ..lwm2m import codecs
from ..lwm2m.model import LwM2MError
from ..lwm2m.model import Path as LwPath
from .registry import GONE, Registration, RegistrationEvent

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS registrations (
        endpoint        VARCHAR(255) PRIMARY KEY,
        registration_id VARCHAR(64) NOT NULL,
        host            VARCHAR(255) NOT NULL,
        port            INTEGER NOT NULL,
        lifetime        INTEGER NOT NULL,
        lwm2m_version   VARCHAR(16) NOT NULL,
        binding_mode    VARCHAR(16) NOT NULL,
        object_links    TEXT NOT NULL,
        root_path       VARCHAR(255) NOT NULL,
        queue_mode      INTEGER NOT NULL,
        sms_number      VARCHAR(64),
        registered_at   DOUBLE PRECISION NOT NULL,
        updated_at      DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS deployments (
        endpoint   VARCHAR(255) NOT NULL,
        instance   INTEGER NOT NULL,
        name       VARCHAR(255) NOT NULL,
        version    VARCHAR(64) NOT NULL,
        stage      VARCHAR(16) NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (endpoint, instance)
    )""",
)
REGISTRATION_COLUMNS = ("endpoint", "registration_id", "host", "port", "lifetime", "lwm2m_version", "binding_mode",
                        "object_links", "root_path", "queue_mode", "sms_number", "registered_at", "updated_at")
DEPLOYMENT_COLUMNS = ("endpoint", "instance", "name", "version", "stage", "updated_at")
FLUSH_EVERY = 0.2  # s between batched writes
STAGES = {4: "installed", 10: "active", 11: "installed", 6: "created"}  # executed resource of /9/x -> stage


def _upsert(table: str, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}")


@dataclass(frozen=True)
class Deployment:
    """A package the gateway put on a device: ``/9/{instance}`` and how far it got."""

    endpoint: str
    instance: int
    name: str = ""
    version: str = ""
    stage: str = "created"  # created, written, installed, active
    updated_at: float = 0.0


class GatewayStore:
    """The gateway's database; see the module docs."""

    def __init__(self, path: str | Path, log: logging.Logger | None = None):
        self.path = Path(path)
        self.log = log or logging.getLogger("hil.gateway.store")
        self._db: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()  # one batch at a time on the connection
        self._pending_regs: dict[str, tuple[Any, ...] | None] = {}  # endpoint -> row, None = delete
        self._pending_deps: dict[tuple[str, int], tuple[Any, ...] | None] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.deployments: dict[tuple[str, int], Deployment] = {}
        self.writes = 0  # batches written

    # ------------------------------------------------------------------ lifetime

    def open(self) -> list[Registration]:
        """Create the schema if needed; return the stored registrations (every one, expired or not)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in SCHEMA:
                db.execute(statement)
            regs = [self._registration(dict(zip(REGISTRATION_COLUMNS, row)))
                    for row in db.execute(f"SELECT {', '.join(REGISTRATION_COLUMNS)} FROM registrations")]
            for row in db.execute(f"SELECT {', '.join(DEPLOYMENT_COLUMNS)} FROM deployments"):
                dep = Deployment(*row)
                self.deployments[(dep.endpoint, dep.instance)] = dep
        except sqlite3.Error as exc:
            raise StoreError(f"gateway database {self.path}: {exc}") from None
        self._db = db
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically(), name="gateway-store")
        return regs

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()
        db, self._db = self._db, None
        if db is not None:
            db.close()

    # ------------------------------------------------------------------ changes

    def on_registration_event(self, event: RegistrationEvent) -> None:
        reg = event.registration
        if event.kind in GONE:
            self._pending_regs[reg.endpoint] = None
            for key in [k for k in self.deployments if k[0] == reg.endpoint]:
                self._drop_deployment(key)
        elif event.kind in ("registered", "updated"):
            self._pending_regs[reg.endpoint] = self._row(reg)
        else:
            return  # reachability is not kept: a restarted gateway finds out again
        self._wake.set()

    def on_device_request(self, endpoint: str, method: str, path: LwPath, payload: bytes = b"",
                          content_format: int | None = None) -> None:
        """A request to a device succeeded (a create: ``path`` is the instance made): note what it did to object 9."""
        if path.obj != 9 or path.inst is None:
            return
        key = (endpoint, path.inst)
        current = self.deployments.get(key)
        if method == "DELETE" and path.res is None:
            self._drop_deployment(key)
            return
        if method == "POST" and path.res is None and current is None:
            self._put(Deployment(endpoint, path.inst, stage="created", updated_at=time.time()))
        elif path.res == 2 and method in ("PUT", "POST"):
            name, version = _name_and_version(_package(payload, path, content_format))
            self._put(Deployment(endpoint, path.inst, name, version, "written", time.time()))
        elif method == "POST" and path.res in STAGES and current is not None:
            self._put(Deployment(endpoint, path.inst, current.name, current.version, STAGES[path.res], time.time()))

    def _put(self, dep: Deployment) -> None:
        self.deployments[(dep.endpoint, dep.instance)] = dep
        self._pending_deps[(dep.endpoint, dep.instance)] = tuple(getattr(dep, c) for c in DEPLOYMENT_COLUMNS)
        self._wake.set()

    def _drop_deployment(self, key: tuple[str, int]) -> None:
        self.deployments.pop(key, None)
        self._pending_deps[key] = None
        self._wake.set()

    # ------------------------------------------------------------------ writing

    async def _flush_periodically(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(FLUSH_EVERY)  # gather a batch
            self._wake.clear()
            try:
                await self.flush()
            except StoreError as exc:
                self.log.error("%s", exc)

    async def flush(self) -> None:
        """Write every change made so far (in a worker thread)."""
        regs, self._pending_regs = self._pending_regs, {}
        deps, self._pending_deps = self._pending_deps, {}
        if (regs or deps) and self._db is not None:
            await asyncio.to_thread(self._write, regs, deps)

    def _write(self, regs: dict[str, tuple[Any, ...] | None], deps: dict[tuple[str, int], tuple[Any, ...] | None]) -> None:
        assert self._db is not None
        with self._write_lock:
            try:
                self._db.execute("BEGIN")
                for endpoint, row in regs.items():
                    if row is None:
                        self._db.execute("DELETE FROM registrations WHERE endpoint = ?", (endpoint,))
                    else:
                        self._db.execute(_upsert("registrations", REGISTRATION_COLUMNS, ("endpoint",)), row)
                for (endpoint, instance), row in deps.items():
                    if row is None:
                        self._db.execute("DELETE FROM deployments WHERE endpoint = ? AND instance = ?", (endpoint, instance))
                    else:
                        self._db.execute(_upsert("deployments", DEPLOYMENT_COLUMNS, ("endpoint", "instance")), row)
                self._db.execute("COMMIT")
                self.writes += 1
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"gateway database {self.path}: writing {len(regs)} registrations and "
                                 f"{len(deps)} deployments failed: {exc}") from None

    # ------------------------------------------------------------------ rows

    @staticmethod
    def _row(reg: Registration) -> tuple[Any, ...]:
        host, port = reg.address
        return (reg.endpoint, reg.registration_id, host, port, reg.lifetime, reg.lwm2m_version, reg.binding,
                format_links(reg.object_links), reg.root_path, int(reg.queue_mode), reg.sms_number,
                reg.registered_at, reg.updated_at)

    @staticmethod
    def _registration(row: dict[str, Any]) -> Registration:
        links: list[Link] = parse_links(row["object_links"].encode()) if row["object_links"] else []
        return Registration(
            endpoint=row["endpoint"], registration_id=row["registration_id"], address=(row["host"], int(row["port"])),
            lifetime=int(row["lifetime"]), lwm2m_version=row["lwm2m_version"], binding=row["binding_mode"],
            object_links=links, registered_at=float(row["registered_at"]), updated_at=float(row["updated_at"]),
            root_path=row["root_path"], queue_mode=bool(row["queue_mode"]), sms_number=row["sms_number"],
        )


class StoreError(RuntimeError):
    """The gateway's database could not be opened, read or written; the message names the file."""


def _package(payload: bytes, path: LwPath, content_format: int | None) -> bytes:
    """The package bytes of a write of /9/x/2, whatever format carried them."""
    try:
        value = codecs.decode(payload, path, content_format).get(path)
    except LwM2MError:
        return b""
    return value if isinstance(value, bytes) else str(value or "").encode()


def _name_and_version(payload: bytes) -> tuple[str, str]:
    """name and version from a service.json package, as far as it says ("" otherwise)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    return str(doc.get("name") or ""), str(doc.get("version") if doc.get("version") is not None else "")
