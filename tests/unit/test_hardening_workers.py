"""Issue 20, item 11: a hanging engine must not starve healthy ones, whatever the workers.

- a target whose inventory has not succeeded runs its inventory only, one run at a time:
  a hanging engine holds one worker, not one per job;
- such targets share at most workers - 1 workers: one stays for engines that answer;
- the df job asks /version and /info with the short (inventory) timeout.
The fleet figures (100 targets, 20 hanging) are for tests/bench_scale.py's fleet case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.cli import parse_config
from exporter.config import EngineConfig, TargetConfig
from exporter.jobs import Scheduler, build_jobs
from exporter.state import State
from exporter.target import Target
from tests.support.fake_engine import FakeEngine, synthetic_engine
from tests.support.wait import wait_until


@pytest.fixture
def engines() -> Iterator[tuple[FakeEngine, FakeEngine]]:
    good, hanging = synthetic_engine(), synthetic_engine()
    hanging.delays["/version"] = 60.0  # answers nothing until closed
    yield good, hanging
    good.close()
    hanging.close()


def settings(*flags: str):
    return parse_config(list(flags), {}).target.settings


def test_hanging_engines_leave_a_worker_to_one_that_answers(engines):
    good_engine, hanging_engine = engines
    scheduler = Scheduler(2)
    fast = settings("--collect.interval=1s", "--collect.disk-usage-interval=0")
    slow = settings("--collect.interval=30s", "--collect.timeout=30s",
                    "--collect.disk-usage-interval=30s")  # fmt: skip
    good = Target(TargetConfig("good", EngineConfig(good_engine.url), fast))
    hanging = [
        Target(TargetConfig(f"hang{i}", EngineConfig(hanging_engine.url), slow)) for i in range(2)
    ]
    scheduler.start()
    try:
        good.start(scheduler)
        status = good.state.inventory
        wait_until(lambda: status.result.status.success, what="the good target collected")
        for target in hanging:  # inventory and df each: four runs of 30 s for two workers
            target.start(scheduler)
        wait_until(lambda: hanging_engine.count("/version") >= 1, what="a hanging run started")
        before = status.result.status.last_success
        assert before is not None
        # the good target goes on being collected while both hanging engines wait
        wait_until(
            lambda: (status.result.status.last_success or 0) > before + 2,
            15.0,
            what=f"the good target collected again: last success {status.result.status}",
        )
        time.sleep(0.5)
        # one hanging target's inventory holds a worker; the other waits, and no df started
        assert hanging_engine.count("/version") == 1
        assert hanging_engine.count("/system/df") == 0
    finally:
        for target in (good, *hanging):
            target.stop(scheduler)
        scheduler.shutdown()


def test_the_df_job_asks_the_engine_identity_with_the_short_timeout():
    flags = settings("--collect.timeout=3s", "--collect.disk-usage-timeout=2m")
    inventory, df = build_jobs(EngineConfig("tcp://127.0.0.1:1"), flags, State())
    assert (inventory.client.timeout, inventory.client.identity_timeout) == (3.0, 3.0)
    assert (df.client.timeout, df.client.identity_timeout) == (120.0, 3.0)
