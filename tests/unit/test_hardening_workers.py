"""Issue 20, item 11: a hanging engine must not starve healthy ones, whatever the workers.

- a target whose inventory has not succeeded runs its inventory only, one run at a time:
  a hanging engine holds one worker, not one per job;
- such targets, once they have failed, share at most workers - 1 workers: one stays for
  engines that answer (a first run is not held back: a fleet starts at full speed);
- the df job asks /version and /info with the short (inventory) timeout.
The fleet figures (100 targets, 20 hanging) are for tests/bench_scale.py's fleet case.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter import jobs
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
    hanging = [Target(TargetConfig("hang", EngineConfig(hanging_engine.url), slow))]
    scheduler.start()
    try:
        good.start(scheduler)
        status = good.state.inventory
        wait_until(lambda: status.result.status.success, what="the good target collected")
        for target in hanging:  # inventory and df: two runs of 30 s for two workers
            target.start(scheduler)
        wait_until(lambda: hanging_engine.count("/version") >= 1, what="a hanging run started")
        before = status.result.status.last_success
        assert before is not None
        # the good target goes on being collected while the hanging engine waits
        wait_until(
            lambda: (status.result.status.last_success or 0) > before + 2,
            15.0,
            what=f"the good target collected again: last success {status.result.status}",
        )
        time.sleep(0.5)
        # the hanging target's inventory holds a worker; its df waits for it
        assert hanging_engine.count("/version") == 1
        assert hanging_engine.count("/system/df") == 0
    finally:
        for target in (good, *hanging):
            target.stop(scheduler)
        scheduler.shutdown()


def test_failing_targets_share_all_workers_but_one():
    gate = jobs.Gate(4)
    assert [gate.enter(f"f{i}", unproven=True, failed=True) for i in range(4)] == [
        True, True, True, False,
    ]  # fmt: skip
    assert gate.enter("new", unproven=True, failed=False)  # a first run is not held back
    assert not gate.enter("new", unproven=True, failed=False)  # one run of it at a time
    assert gate.enter("good", unproven=False, failed=False)
    assert gate.enter("good", unproven=False, failed=False)  # a proven target's jobs: side by side
    gate.leave("f0", unproven=True, failed=True)
    assert gate.enter("f3", unproven=True, failed=True)
    assert jobs.Gate(1).enter("only", unproven=True, failed=True)  # one worker: it is theirs too


def test_the_df_job_asks_the_engine_identity_with_the_short_timeout():
    flags = settings(
        "--collect.timeout=3s", "--collect.disk-usage-timeout=2m", "--collect.swarm-interval=0"
    )
    inventory, df = build_jobs(EngineConfig("tcp://127.0.0.1:1"), flags, State())
    assert (inventory.client.timeout, inventory.client.identity_timeout) == (3.0, 3.0)
    assert (df.client.timeout, df.client.identity_timeout) == (120.0, 3.0)
