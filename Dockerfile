# docker-inventory-exporter container image.
#
#   docker build -t ghcr.io/docker-inventory-exporter/docker-inventory-exporter:0.1.0 .
#   docker run -d --name docker-inventory-exporter -p 9487:9487 \
#     -v /var/run/docker.sock:/var/run/docker.sock:ro \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     ghcr.io/docker-inventory-exporter/docker-inventory-exporter:0.1.0
#
# Build arguments:
#   BASE_IMAGE     any Debian/Ubuntu-based image with python3 (>= 3.9) and its venv module;
#                  both stages use it, so the copied virtualenv finds the same interpreter.
#   PIP_NO_INDEX   set to 1 for an offline build: dependencies then come only from *.whl
#                  files in a wheels/ directory at the root of the build context (pip's
#                  --find-links). Without wheels/, pip installs the dependencies from PyPI.
#   PIP_INDEX_URL  another package index (a PyPI mirror); used by the builder stage only.
#   VERSION, REVISION, CREATED, SOURCE   values of the OCI labels below.
#
# No "# syntax=" line on purpose: it makes BuildKit pull a frontend image, and both the
# classic builder and BuildKit's built-in frontend understand everything used here.

ARG BASE_IMAGE=python:3.12.12-slim-bookworm

# --------------------------------------------------------------------------- builder
FROM ${BASE_IMAGE} AS builder

# Passed through to pip in the environment of the RUN below (unset unless given):
# PIP_NO_INDEX=1 for offline builds from wheels/, PIP_INDEX_URL for a PyPI mirror.
ARG PIP_NO_INDEX
ARG PIP_INDEX_URL
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# .dockerignore lets only pyproject.toml, README.md, LICENSE, exporter/ and wheels/*.whl in.
WORKDIR /src
COPY . .

# The source revision, for docker_exporter_build_info (declared again at the end for the label).
ARG REVISION=

# Build the project's wheel (an isolated PEP 517 build: setuptools and wheel come from the
# index, or from wheels/ when offline), install it with its dependencies into /opt/venv,
# then drop the installers from the venv: the runtime image needs none of them.
RUN set -eu; \
    if [ -d wheels ]; then export PIP_FIND_LINKS=/src/wheels; fi; \
    if [ -n "${REVISION}" ]; then printf '%s\n' "${REVISION}" > exporter/REVISION; fi; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip wheel --no-deps --wheel-dir /tmp/dist .; \
    /opt/venv/bin/python -m pip install /tmp/dist/*.whl; \
    /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel; \
    /opt/venv/bin/docker-inventory-exporter --version

# --------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

# A fixed, unprivileged uid/gid with no home and no login shell. Reaching the engine
# socket takes its group: docker run --group-add "$(stat -c %g /var/run/docker.sock)".
RUN groupadd --system --gid 10001 exporter \
 && useradd --system --no-log-init --uid 10001 --gid exporter \
      --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin exporter

# Owned by root and not writable by the exporter; it runs fine on a read-only root fs.
COPY --from=builder /opt/venv /opt/venv

ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
EXPOSE 9487

# GET /-/healthy through the exporter's own --healthcheck mode: no curl/wget in the image.
# It reads the running exporter's flags from /proc, so it follows whatever
# --web.listen-address and --web.config.file (TLS, basic auth) the container was given.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["docker-inventory-exporter", "--healthcheck"]

ENTRYPOINT ["docker-inventory-exporter"]

# Last, so that a new revision or date only adds this metadata-only step.
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=
ARG CREATED=
ARG SOURCE=
LABEL org.opencontainers.image.title="docker-inventory-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the images and containers piling up on Docker hosts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
