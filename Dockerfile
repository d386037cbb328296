# One image for the API, the worker and migrations; the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY db ./db
COPY devstack ./devstack
COPY cli.py cli_ops.py config.py worker.py ./
RUN pip install . && useradd --system --uid 10001 recur
USER recur

EXPOSE 8000 9464
# Worker: `recur worker` (SIGTERM drains in-flight activities); migrations: `recur migrate`.
CMD ["recur", "api", "--host", "0.0.0.0", "--port", "8000"]
