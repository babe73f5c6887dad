"""docker-inventory-exporter: what piles up on Docker hosts, as Prometheus metrics."""

__version__ = "0.1.0"
