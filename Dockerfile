# One image for the API, the worker and migrations (the command picks the role): the
# `production` stage, built by default. It installs Recur's runtime dependencies only; the
# development stack (devstack/, the `stack` extra) is not in it.
FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY db ./db
COPY recur_cli ./recur_cli
COPY cli.py cli_ops.py config.py worker.py ./
RUN pip install . && useradd --system --uid 10001 recur
USER recur

EXPOSE 8000 9464
# Worker: `recur worker` (SIGTERM drains in-flight activities); migrations: `recur migrate`.
CMD ["recur", "api", "--host", "0.0.0.0", "--port", "8000"]

# The sandbox profile's fake Stripe API (docker-compose.yml, `localstripe`): the image
# above plus the development stack. Never a production service.
FROM app AS sandbox
USER root
COPY devstack ./devstack
RUN pip install '.[stack]'
USER recur
EXPOSE 8420
CMD ["python", "-m", "devstack.localstripe_server", "--host", "0.0.0.0", "--port", "8420"]

# Last, so that a plain `docker build .` builds it.
FROM app AS production
