# syntax=docker/dockerfile:1
# Production image of `stream`: the package installed from this repo, run as a
# non-root user. The code reads schemas/ and topologies/ relative to the repo root
# (stream/config.py: PROJECT_ROOT = parent of the package), so the whole repo is
# copied to /app and the package is installed *editable* from there: the installed
# `stream` package then resolves to /app/stream and finds /app/schemas and
# /app/topologies. No `embedded` extra: production talks to a real Kafka and Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/stream \
    STREAM_FAUST_DATA_DIR=/var/lib/stream/faust

RUN groupadd --system --gid 10001 stream \
 && useradd --system --uid 10001 --gid stream --home-dir /home/stream --create-home \
        --shell /usr/sbin/nologin stream \
 && install -d -o stream -g stream -m 0750 /var/lib/stream /var/lib/stream/faust

WORKDIR /app

# Dependencies first, in their own layer: they change far less often than the code.
# (All of them ship manylinux wheels for CPython 3.11: no compiler in the image.)
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The repo (see .dockerignore), then the package itself, editable, without deps.
COPY . /app
RUN pip install --no-deps -e /app \
 && python -c "import stream.config as c; assert (c.PROJECT_ROOT / 'schemas').is_dir() and (c.PROJECT_ROOT / 'topologies' / 'clickstream.yaml').is_file(), c.PROJECT_ROOT" \
 && stream --help > /dev/null

# Numeric ids (= the `stream` user above) so runtimes can verify runAsNonRoot.
USER 10001:10001

# Faust web (Prometheus /metrics) of a worker.
EXPOSE 6066

ENTRYPOINT ["stream"]
CMD ["--help"]
