"""Swarm services: who is asked, how desired and current tasks are counted, and that the
engine requests of a collection do not grow with services, tasks or volumes."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from exporter.config import EngineConfig, JobSchedule
from exporter.engine import EngineClient
from exporter.jobs import DiskUsageJob, InventoryJob, SwarmJob
from exporter.records import parse_services, parse_tasks, swarm_manager
from exporter.snapshot import build_swarm
from exporter.state import State
from tests.support.fake_engine import FakeEngine
from tests.support.inventory import NOW, exporter_registry, publish, synthetic_swarm
from tests.support.paths import load

INFO = load("docker-20.10/info.json")  # recorded outside Swarm: LocalNodeState inactive


def info(control: bool, node_state: str = "active") -> dict[str, Any]:
    answer: dict[str, Any] = copy.deepcopy(INFO)
    answer["Swarm"].update(ControlAvailable=control, LocalNodeState=node_state, NodeID="n1")
    return answer


@pytest.mark.parametrize(
    ("answer", "manager"),
    [
        (info(True), True),
        (info(False), False),  # a worker
        (INFO, False),  # no Swarm
        (info(True, "pending"), False),  # joining: cannot answer /services yet
        ({"Swarm": None}, False),
        ({}, False),
        ([], False),
    ],
)
def test_only_an_active_manager_is_asked(answer: object, manager: bool) -> None:
    assert swarm_manager(answer) is manager


def test_desired_from_the_engine_or_else_from_the_spec_and_tasks() -> None:
    """ServiceStatus needs API 1.41 (?status=true); without it, a replicated service wants
    its Replicas and a global one its tasks not meant to shut down, as the engine counts."""
    services = parse_services(
        [
            {"ID": "r", "Spec": {"Name": "rep", "Mode": {"Replicated": {"Replicas": 4}}}},
            {"ID": "g", "Spec": {"Name": "glob", "Mode": {"Global": {}}}},
            {"ID": "j", "Spec": {"Name": "job", "Mode": {"ReplicatedJob": {}}}},
            {"ID": "s", "Spec": {"Name": "status", "Mode": {"Global": {}}},
             "ServiceStatus": {"DesiredTasks": 7, "RunningTasks": 1}},
            {"ID": "", "Spec": {"Name": "no-id"}},
        ]
    )  # fmt: skip
    tasks = parse_tasks(
        [
            {"ServiceID": "g", "Status": {"State": "running"}, "DesiredState": "running"},
            {"ServiceID": "g", "Status": {"State": "pending"}, "DesiredState": "running"},
            {"ServiceID": "g", "Status": {"State": "failed"}, "DesiredState": "shutdown"},
            {"ServiceID": "s", "Status": {"State": "Running"}, "DesiredState": "running"},
            {"ServiceID": "", "Status": {"State": "running"}},
        ]
    )
    snap = build_swarm(services, tasks, NOW)
    facts = {s.name: (s.mode, s.desired, dict(s.tasks)) for s in snap.services}
    assert facts == {
        "rep": ("replicated", 4, {"running": 0}),
        "glob": ("global", 2, {"failed": 1, "pending": 1, "running": 1}),
        "job": ("replicated-job", None, {"running": 0}),
        "status": ("global", 7, {"running": 1}),
    }


def test_series_of_a_manager() -> None:
    state = State(swarm=True)
    publish(state.swarm, synthetic_swarm())
    registry = exporter_registry(state)

    def desired(service: str, mode: str) -> float | None:
        labels = {"service": service, "mode": mode}
        return registry.get_sample_value("docker_swarm_service_replicas_desired", labels)

    def tasks(service: str, state: str) -> float | None:
        labels = {"service": service, "state": state}
        return registry.get_sample_value("docker_swarm_service_tasks", labels)

    assert (desired("shop_web", "replicated"), desired("shop_agent", "global")) == (3, 2)
    assert desired("idle", "replicated") == 0
    assert (tasks("shop_web", "running"), tasks("shop_web", "failed")) == (2, 1)
    assert (tasks("shop_web", "preparing"), tasks("idle", "running")) == (1, 0)
    assert tasks("shop_agent", "failed") is None


def swarm_answers(n_services: int, n_tasks_each: int, manager: bool) -> dict[str, object]:
    services = [
        {"ID": f"s{i}", "Spec": {"Name": f"svc{i}", "Mode": {"Replicated": {"Replicas": 2}}},
         "ServiceStatus": {"DesiredTasks": 2, "RunningTasks": 2}}
        for i in range(n_services)
    ]  # fmt: skip
    tasks = [
        {"ID": f"t{i}-{j}", "ServiceID": f"s{i}", "Status": {"State": "running"},
         "DesiredState": "running"}
        for i in range(n_services)
        for j in range(n_tasks_each)
    ]  # fmt: skip
    volumes = [
        {"Name": f"v{i}", "Driver": "local", "UsageData": {"Size": i, "RefCount": i % 2}}
        for i in range(n_services * n_tasks_each)
    ]
    df = dict(load("synthetic/system_df-1.52.json"), Volumes=volumes)
    return {
        "/version": load("synthetic/version-1.52.json"),
        "/info": info(True) if manager else INFO,
        "/images/json": load("synthetic/images-1.52.json"),
        "/containers/json": load("synthetic/containers-1.52.json"),
        "/services": services,
        "/tasks": tasks,
        "/system/df": df,
    }


def jobs(engine: FakeEngine, state: State) -> tuple[InventoryJob, SwarmJob, DiskUsageJob]:
    def client() -> EngineClient:
        return EngineClient(EngineConfig(engine.url), 2.0)

    schedule = JobSchedule(15.0, 2.0)
    return (
        InventoryJob(client(), schedule, state.inventory, ()),
        SwarmJob(client(), schedule, state.swarm, state.inventory),
        DiskUsageJob(client(), JobSchedule(300.0, 2.0), state.disk_usage, ("volumes",), "off"),
    )


@pytest.mark.parametrize(("n_services", "n_tasks"), [(1, 1), (50, 20)])
@pytest.mark.parametrize("manager", [True, False])
def test_requests_per_collection_are_constant(n_services: int, n_tasks: int, manager: bool):
    engine = FakeEngine(swarm_answers(n_services, n_tasks, manager))
    try:
        state = State(swarm=True)
        inventory, swarm, df = jobs(engine, state)
        for _ in range(3):
            publish(state.inventory, inventory.collect(NOW))
            publish(state.swarm, swarm.collect(NOW))
            publish(state.disk_usage, df.collect(NOW))
        # /version and /info once per client, then per collection: the two lists, /system/df,
        # and on a manager /services and /tasks; nothing grows with services, tasks, volumes.
        # The swarm job of an engine that is no manager never connects.
        clients = 3 if manager else 2
        per_run = {"/services": 3, "/tasks": 3} if manager else {}
        assert dict(engine.requests) == {
            "/version": clients, "/info": clients,
            "/images/json": 3, "/containers/json": 3, "/system/df": 3, **per_run,
        }  # fmt: skip
        view = state.view()
        assert view.swarm is not None and view.swarm.manager is manager
        assert len(view.swarm.services) == (n_services if manager else 0)
        assert view.disk_usage is not None and len(view.disk_usage.volumes) == n_services * n_tasks
        registry = exporter_registry(state)
        running = registry.get_sample_value(
            "docker_swarm_service_tasks", {"service": "svc0", "state": "running"}
        )
        assert running == (n_tasks if manager else None)
        # a worker or an engine outside Swarm exports no Swarm family at all
        names = {f.name for f in registry.collect()}
        assert ("docker_swarm_service_tasks" in names) is manager
    finally:
        engine.close()


def test_nothing_is_asked_before_an_inventory_saw_a_manager():
    """The first swarm run may come before the first inventory: it asks nothing either."""
    engine = FakeEngine(swarm_answers(1, 1, True))
    try:
        state = State(swarm=True)
        inventory, swarm, _ = jobs(engine, state)
        assert swarm.collect(NOW).manager is False
        assert dict(engine.requests) == {}
        publish(state.inventory, inventory.collect(NOW))
        assert swarm.collect(NOW).manager is True
    finally:
        engine.close()


def test_status_is_asked_from_api_1_41():
    engine = FakeEngine(swarm_answers(1, 1, True))
    try:
        state = State(swarm=True)
        inventory, swarm, _ = jobs(engine, state)
        publish(state.inventory, inventory.collect(NOW))
        swarm.collect(NOW)
        assert ("/services", "status=true") in engine.queries
    finally:
        engine.close()
