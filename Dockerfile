# syntax=docker/dockerfile:1
# One image for the seven agents: each container runs `cli-trading agent NAME`
# (see docker-compose.yml). Build: docker-compose build   (or: docker build -t cli-trading .)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- builder: a wheel of the project, installed with its dependencies into /opt/venv ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only for dependencies that ship no wheel for this platform; it stays in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
RUN pip install --upgrade pip wheel
# Dependencies first, at the versions and hashes of the lock (scripts/lock.sh makes it from
# pyproject.toml): this layer stays cached while only src/ changes.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install --no-deps /wheels/*.whl

# -- native: the compiled core, as the README's install builds it (the `fast` extra, then
# `python -m cli_trading.build_native`; src/cli_trading/native.py) --------------------------------
# mypy (mypyc), setuptools and the YAML stubs at the versions and hashes CI builds with
# (requirements-dev.lock: the runtime's pins and the dev tools); they stay in this stage: only
# the compiled modules (a few MB) go into the image. The build fails here rather than ship plain
# Python: this stage has the compiler and Python's headers (the python image ships them).
FROM builder AS native
ENV CLI_TRADING_NATIVE_DIR=/opt/cli-trading-native
COPY requirements-dev.lock ./
RUN pip install --require-hashes -r requirements-dev.lock \
 && python -m cli_trading.build_native

# -- runtime -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# curl: the compose healthchecks (curl -fsS http://127.0.0.1:PORT/health);
# netcat-openbsd: the runbook's `docker exec cli-trading-AGENT-1 nc -z redis 6379`;
# postgresql-client: pg_dump/pg_restore for `cli-trading backup` run inside a container.
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl netcat-openbsd ca-certificates postgresql-client \
 && rm -rf /var/lib/apt/lists/*
# Non-root. uid/gid 10001 are the defaults of CLI_TRADING_UID/GID in docker-compose.yml: the
# secrets (mode 0600) and ./logs must belong to the user the containers run as.
RUN groupadd --system --gid 10001 trader \
 && useradd --system --uid 10001 --gid trader --home-dir /app --no-create-home --shell /usr/sbin/nologin trader
COPY --from=builder /opt/venv /opt/venv
# The compiled core, loaded only while its fingerprint (the package's sources, this Python)
# matches: the same installed sources as the builder's venv, the same base image
COPY --from=native /opt/cli-trading-native /opt/cli-trading-native
ENV PATH=/opt/venv/bin:$PATH \
    CLI_TRADING_NATIVE_DIR=/opt/cli-trading-native \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/app/data \
    LOG_DIR=/app/logs \
    BIND_HOST=0.0.0.0
WORKDIR /app
RUN mkdir -p /app/data /app/logs /app/config && chown -R trader:trader /app
# The image's backtests and optimizer run compiled: a build whose fingerprint does not match
# (another Python, edited sources) would load plain Python silently, so it fails the build here
RUN python -c 'import cli_trading.backtest.engine, cli_trading.native as n; assert n.compiled(), "compiled core not loaded"'
USER trader
EXPOSE 7001-7007
ENTRYPOINT ["cli-trading"]
CMD ["agent", "orchestrator"]
