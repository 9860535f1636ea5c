# The inferwatch image: the demo service, the standalone exporter and the alert sink.
#   docker build -t inferwatch:0.1.0 .        (docker-compose.yml builds it as well)
# Pinned by tag; pin by digest (python:3.11.10-slim-bookworm@sha256:...) for bit-for-bit builds.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid, so volume ownership and secret-file permissions are predictable.
RUN groupadd --system --gid 10001 inferwatch \
    && useradd --system --uid 10001 --gid inferwatch --home-dir /home/inferwatch \
       --create-home --shell /usr/sbin/nologin inferwatch \
    && install -d -o inferwatch -g inferwatch /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# `all` includes the PostgreSQL driver and the demo's SQLite driver.
RUN pip install ".[all]" && rm -rf /src

USER inferwatch
WORKDIR /home/inferwatch
# demo, alert sink, exporter
EXPOSE 8000 9095 9841
ENTRYPOINT ["inferwatch"]
CMD ["--help"]
