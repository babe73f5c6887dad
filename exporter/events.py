"""Event records and the counts derived from them: restarts, OOM kills, exits.

``parse_event`` turns one line of the engine's ``/events`` stream into an ``EventRecord``.
``EventCounter`` folds records into counts, dropping the ones a reconnect replays (the
engine replays from ``since`` inclusive), and hands out immutable ``EventsSnapshot``\\ s
that the collector reads. Nothing here does I/O: the stream lives in eventstream.py.

The restart rule: every ``start`` of a container after its first one. A container whose
``create`` the stream showed, or that the newest inventory lists as ``created``, has not
started yet; any other container seen starting has started before (a restart-policy
``die``/``start``, ``docker restart``, ``docker start`` of an exited one). So for
restart-policy restarts the count equals the growth of inspect's ``RestartCount``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import msgspec

from .records import text

# The actions docker_events_total names; anything else counts as "other". The stream asks
# the engine for the container and image actions below only (healthchecks' exec_* never
# come), so "other" holds what Podman or a newer engine adds under those names' types.
CONTAINER_ACTIONS = (
    "create",
    "start",
    "restart",
    "die",
    "oom",
    "kill",
    "stop",
    "pause",
    "unpause",
    "rename",
    "update",
    "destroy",
    "remove",  # Podman's destroy
)
IMAGE_ACTIONS = ("pull", "tag", "untag", "delete", "import", "load")
ACTIONS = frozenset(CONTAINER_ACTIONS + IMAGE_ACTIONS)
OTHER = "other"
TYPES = ("container", "image")
# The /events filter: what the exporter uses, matched by the engine on the action without
# its ": suffix" (so "exec_start: sh -c ..." is never sent). Podman 4.3 matches it on its own
# status name, "died" for the die it sends (without it, no die ever comes); Docker and Podman
# 5 match "die", and no engine sends a "died".
FILTERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"type": TYPES, "event": CONTAINER_ACTIONS + IMAGE_ACTIONS + ("died",)}
)
# Actions after which the inventory (images, containers, their states) is out of date.
CHANGES_INVENTORY = frozenset(
    {
        "create",
        "start",
        "die",
        "stop",
        "pause",
        "unpause",
        "rename",
        "destroy",
        "remove",
        "restart",
        "pull",
        "tag",
        "untag",
        "delete",
        "import",
        "load",
    }
)
# At most this many containers are listed by ID after events (their IDs go in the URL,
# 65 bytes each, under a socket proxy's 16 KiB request buffer); more changed ones ask for a
# full list.
PATCH_LIMIT = 100
# Podman sends no oom event: a die with this exit code (SIGKILL, what the OOM killer sends)
# is inspected once for State.OOMKilled. The results docker_exporter_events_die_inspects_total
# names: the inspect said OOMKilled true or false, it failed (the container gone, say), or
# it was skipped (too many waiting).
OOM_EXIT_CODE = 137
DIE_INSPECT_RESULTS = ("oom", "no_oom", "failed", "skipped")
# How many events moby holds for replay (daemon/events, eventsLimit).
ENGINE_REPLAY_LIMIT = 256
# Keys of counted events remembered to drop replays: far more than any replay holds.
RECENT_KEYS = 4096


class EventDataError(ValueError):
    """An event line that is not one JSON event object; str() is the cause, stable."""


@dataclass(frozen=True)
class EventRecord:
    type: str
    action: str  # before any ": suffix"
    actor_id: str
    name: str  # the container's name (Actor.Attributes.name), "" when absent
    exit_code: int | None  # on die
    time_nano: int  # engine time of the event, nanoseconds since the epoch

    @property
    def key(self) -> tuple[int, str, str, str]:
        """What tells two events apart: a replayed one has the same key."""
        return (self.time_nano, self.type, self.action, self.actor_id)


class _Actor(msgspec.Struct, gc=False):
    ID: Any = None
    Attributes: Any = None


class _RawEvent(msgspec.Struct, gc=False):
    Type: Any = None
    Action: Any = None
    Actor: Any = None
    time: Any = None
    timeNano: Any = None
    # pre-1.22 fields, still sent beside the new ones by Docker; the only ones very old
    # Podman versions fill
    status: Any = None
    id: Any = None


_decoder = msgspec.json.Decoder(_RawEvent)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def parse_event(line: bytes) -> EventRecord:
    """One stream line as a record; EventDataError for junk, whose message is the cause."""
    try:
        raw = _decoder.decode(line)
    except msgspec.ValidationError:
        raise EventDataError("an event line is not a JSON object") from None
    except msgspec.DecodeError:
        raise EventDataError("an event line is not valid JSON") from None
    action = raw.Action if isinstance(raw.Action, str) else raw.status
    if not isinstance(action, str) or not action:
        raise EventDataError("an event has no Action")
    action = action.split(":", 1)[0].strip()
    kind = raw.Type if isinstance(raw.Type, str) and raw.Type else "container"
    actor = raw.Actor if isinstance(raw.Actor, dict) else {}
    actor_id = actor.get("ID")
    if not isinstance(actor_id, str) or not actor_id:
        actor_id = raw.id if isinstance(raw.id, str) else ""
    attributes = actor.get("Attributes")
    if not isinstance(attributes, dict):
        attributes = {}
    name = attributes.get("name")
    time_nano = _int(raw.timeNano)
    if time_nano is None or time_nano <= 0:
        seconds = _int(raw.time)
        if seconds is None or seconds <= 0:
            raise EventDataError("an event has no time")
        time_nano = seconds * 1_000_000_000
    exit_code = _int(attributes.get("exitCode")) if action == "die" else None
    return EventRecord(
        type=kind,
        action=action,
        actor_id=actor_id,
        name=text(name) if isinstance(name, str) else "",
        exit_code=exit_code,
        time_nano=time_nano,
    )


def short_id(full_id: str) -> str:
    return full_id[:12]


class ContainerEvents(msgspec.Struct, frozen=True, gc=False):
    """What the stream told about one container since the exporter started watching (a
    struct the GC does not track: a host keeps one per container that had events)."""

    restarts: int = 0
    oom_kills: int = 0
    last_exit_code: int | None = None
    started: bool = False  # has started at least once (known from the stream)
    created_seen: bool = False  # the stream showed its create: its first start is no restart
    last_event: int = 0  # time_nano of its newest event


@dataclass(frozen=True)
class EventsSnapshot:
    """The stream's counts at one moment, immutable: what the collector reads."""

    up: bool = False  # the stream is open
    reconnects: int = 0
    replay_gaps: int = 0
    last_timestamp: float | None = None  # engine time of the newest event, seconds
    by_action: Mapping[tuple[str, str], int] = field(default_factory=dict)
    containers: Mapping[str, ContainerEvents] = field(default_factory=dict)  # by short id
    die_inspects: Mapping[str, int] = field(default_factory=dict)  # by DIE_INSPECT_RESULTS


NeverStarted = Callable[[str], bool]  # short id -> the newest inventory lists it as created


class EventCounter:
    """Folds events into counts; one per target, used by one thread at a time."""

    def __init__(self) -> None:
        self.by_action: dict[tuple[str, str], int] = {}
        self.containers: dict[str, ContainerEvents] = {}
        self.last_nano = 0  # the newest event counted: a reconnect's since
        # The keys of the last events counted: a reconnect replays from since inclusive, so
        # what it repeats is among them. Not "older than the newest": Podman sends events
        # out of time order (a pull stamped before the create counted just before it).
        self._recent: deque[tuple[int, str, str, str]] = deque()
        self._recent_keys: set[tuple[int, str, str, str]] = set()
        self.up = False
        self.reconnects = 0
        self.replay_gaps = 0
        self.dropped_replays = 0  # events dropped as already counted (for tests and logs)
        self.die_inspects: dict[str, int] = dict.fromkeys(DIE_INSPECT_RESULTS, 0)

    def add(self, event: EventRecord, never_started: NeverStarted | None = None) -> bool:
        """Count one event; False (and nothing counted) when it was counted before."""
        key = event.key
        if key in self._recent_keys:
            self.dropped_replays += 1
            return False
        self._recent.append(key)
        self._recent_keys.add(key)
        if len(self._recent) > RECENT_KEYS:
            self._recent_keys.discard(self._recent.popleft())
        self.last_nano = max(self.last_nano, event.time_nano)
        action = event.action if event.action in ACTIONS else OTHER
        kind = event.type if event.type in TYPES else OTHER
        self.by_action[(kind, action)] = self.by_action.get((kind, action), 0) + 1
        if event.type == "container" and event.actor_id:
            self._container(event, never_started)
        return True

    def _container(self, event: EventRecord, never_started: NeverStarted | None) -> None:
        cid = short_id(event.actor_id)
        if event.action in ("destroy", "remove"):
            self.containers.pop(cid, None)
            return
        seen = self.containers.get(cid)
        known = seen is not None
        c = seen or ContainerEvents()
        c = msgspec.structs.replace(c, last_event=event.time_nano)
        action = event.action
        if action == "create":
            c = msgspec.structs.replace(c, created_seen=True)
        elif action == "start":
            first = (known and c.created_seen and not c.started) or (
                not known and never_started is not None and never_started(cid)
            )
            c = msgspec.structs.replace(c, started=True, restarts=c.restarts + (0 if first else 1))
        elif action == "die":
            c = msgspec.structs.replace(c, started=True)
            if event.exit_code is not None:
                c = msgspec.structs.replace(c, last_exit_code=event.exit_code)
        elif action == "oom":
            c = msgspec.structs.replace(c, oom_kills=c.oom_kills + 1)
        self.containers[cid] = c

    def inspected(self, actor_id: str, oom_killed: bool | None) -> None:
        """What the inspect after a die said (``None``: no answer): on an engine that sends no
        oom event, OOMKilled true after that die is the container's OOM kill."""
        result = "failed" if oom_killed is None else "oom" if oom_killed else "no_oom"
        self.die_inspects[result] += 1
        cid = short_id(actor_id)
        c = self.containers.get(cid)
        if oom_killed and c is not None:
            self.containers[cid] = msgspec.structs.replace(c, oom_kills=c.oom_kills + 1)

    def forget_gone(self, listed: frozenset[str], listed_at_nano: int) -> None:
        """Drop containers the inventory no longer lists and the stream has not named since
        it was taken (their destroy may have come while the stream was down)."""
        containers = self.containers
        for cid in containers.keys() - listed:  # a set difference, at C speed: few are left
            if containers[cid].last_event < listed_at_nano:
                del containers[cid]

    def resume_from(self) -> int:
        """The ``since`` of a reconnect, in nanoseconds (0: none seen yet)."""
        return self.last_nano

    def snapshot(self) -> EventsSnapshot:
        return EventsSnapshot(
            up=self.up,
            reconnects=self.reconnects,
            replay_gaps=self.replay_gaps,
            last_timestamp=self.last_nano / 1e9 if self.last_nano else None,
            by_action=MappingProxyType(dict(self.by_action)),
            containers=MappingProxyType(dict(self.containers)),
            die_inspects=MappingProxyType(dict(self.die_inspects)),
        )


class InventoryChanges:
    """What changed since the inventory last listed, as the stream saw it: the containers
    its events named, or everything (an image event, a reconnect, too many containers).

    The stream adds (on its loop's thread); the inventory job takes (on a worker's).
    """

    def __init__(self, limit: int = PATCH_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._ids: set[str] = set()  # full container IDs
        self._everything = False

    def add(self, event: EventRecord) -> None:
        with self._lock:
            if self._everything:
                return
            if event.type == "container" and event.actor_id:
                self._ids.add(event.actor_id)
                if len(self._ids) <= self.limit:
                    return
            self._everything = True
            self._ids.clear()

    def everything(self) -> None:
        with self._lock:
            self._everything = True
            self._ids.clear()

    def take(self) -> frozenset[str] | None:
        """The container IDs changed since the last take, and none from now on; None when
        only a full list tells what changed."""
        with self._lock:
            ids = None if self._everything else frozenset(self._ids)
            self._ids = set()
            self._everything = False
            return ids


def since_param(nano: int) -> str:
    """Engine time in the form /events' since takes: seconds, a dot, nine digits."""
    return f"{nano // 1_000_000_000}.{nano % 1_000_000_000:09d}"
