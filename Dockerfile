# One raftex node. Configure it with a TOML file mounted at /etc/raftex/node.toml, or
# with flags and secret files (see compose.yaml); its data directory must be a volume so
# the journal and the RocksDB store survive the container. The node runs as uid 10001,
# which must own its secret files (mode 0600).
#
# The first stage builds a wheel with the engine's hot modules compiled by mypyc
# (setup.py, RAFTEX_MYPYC=1: about 1.5x on the engine alone, same events and state hash);
# the image itself carries no compiler. quickfix (the FIX gateway's session layer, used only
# by a node with fix_port set) has no wheel on PyPI, so it is built here too (g++, minutes).
FROM python:3.11-slim AS build

RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY engine ./engine
COPY cluster ./cluster
COPY projection ./projection
COPY warehouse ./warehouse
COPY reports ./reports
COPY surveillance ./surveillance
COPY api ./api
COPY chaos ./chaos
COPY bench ./bench
COPY raftex ./raftex
RUN pip install --no-cache-dir "setuptools>=68" wheel "mypy>=1.10" \
    && RAFTEX_MYPYC=1 pip wheel --no-cache-dir --no-build-isolation --no-deps -w /wheels . \
    && pip wheel --no-cache-dir --no-deps -w /wheels "quickfix>=1.16"

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home /var/lib/raftex raftex \
    && mkdir -p /var/lib/raftex && chown raftex /var/lib/raftex
USER raftex
VOLUME ["/var/lib/raftex"]
# 7000 Raft, 8000 HTTP and WebSocket, 9880 FIX 4.4 (when fix_port is set)
EXPOSE 7000 8000 9880
ENTRYPOINT ["raftex", "node"]
CMD ["--config", "/etc/raftex/node.toml"]
