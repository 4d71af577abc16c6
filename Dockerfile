# One raftex node. Configure it with a TOML file mounted at /etc/raftex/node.toml, or
# with flags and secret files (see compose.yaml); its data directory must be a volume so
# the journal and the RocksDB store survive the container. The node runs as uid 10001,
# which must own its secret files (mode 0600).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY engine ./engine
COPY cluster ./cluster
COPY projection ./projection
COPY api ./api
COPY chaos ./chaos
COPY bench ./bench
COPY raftex ./raftex
RUN pip install --no-cache-dir . && useradd --system --uid 10001 --home /var/lib/raftex raftex \
    && mkdir -p /var/lib/raftex && chown raftex /var/lib/raftex
USER raftex
VOLUME ["/var/lib/raftex"]
EXPOSE 7000 8000
ENTRYPOINT ["raftex", "node"]
CMD ["--config", "/etc/raftex/node.toml"]
