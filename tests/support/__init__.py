"""Everything tests share: paths, environment, polling, processes, Prometheus, PromQL, builders.

Test modules import from here, never from conftest.py or from each other. conftest.py only
turns some of these helpers into pytest fixtures.
"""
