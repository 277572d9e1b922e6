# Build stage: a wheel from the source, with the migrations, templates, static files and example
# prompts/knowledge inside it (pyproject.toml maps the top-level folders into the package).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrations ./migrations
COPY prompts ./prompts
COPY knowledge ./knowledge
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Run stage: only the installed wheel (no source tree), as an unprivileged user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SUPPORTBOT_DATA_DIR=/data \
    SUPPORTBOT_PROMPTS_DIR=/app/prompts \
    SUPPORTBOT_KNOWLEDGE_DIR=/app/knowledge
RUN groupadd --system --gid 10001 supportbot \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /app supportbot
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels
WORKDIR /app
# The service writes the data dir (SQLite, generated secrets) and knowledge/promoted.md (the review
# page's "Add to knowledge base"), so both belong to its user. Chowned before VOLUME, which keeps it.
RUN mkdir /data && chown 10001:10001 /app /data
# Numeric, so a runtime that must prove the user is not root (Kubernetes runAsNonRoot) can.
USER 10001:10001
# The example prompts and knowledge, from the wheel; mount your own over /app/prompts and /app/knowledge.
RUN supportbot init /app
VOLUME /data
EXPOSE 8000
# python's urllib, as the slim image has no curl; any answer but 200 (or none in 4 s) is unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# exec: supportbot gets SIGTERM itself and finishes the streams in flight (SUPPORTBOT_SHUTDOWN_GRACE_SECONDS).
CMD ["sh", "-c", "supportbot db upgrade && exec supportbot serve --host 0.0.0.0 --port 8000"]
