# One image for both processes: `web` (default) and `worker` (docker run IMAGE dmrelay worker).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PORT=8000
WORKDIR /app

# The pinned, hashed installer (pip, setuptools) and runtime lock first: this layer is rebuilt
# only when a lock changes, and no step depends on the pip the base image happens to bundle.
COPY requirements/bootstrap.txt requirements/main.txt requirements/
RUN pip install --require-hashes -r requirements/bootstrap.txt \
 && pip install --require-hashes -r requirements/main.txt

COPY pyproject.toml README.md ./
COPY relay ./relay
COPY workers ./workers
# The spool's directory, the user's own and 0700 (the web process refuses any other); compose
# mounts a volume on it, which starts as a copy of this one.
RUN pip install --no-deps --no-build-isolation . && useradd --create-home --uid 10001 dmrelay \
  && install -d -m 0700 -o dmrelay -g dmrelay /var/lib/dmrelay/spool

USER dmrelay
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["dmrelay", "healthcheck"]
CMD ["dmrelay", "web"]
