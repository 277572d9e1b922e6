FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir -e .
COPY prompts ./prompts
COPY knowledge ./knowledge
COPY migrations ./migrations
ENV SUPPORTBOT_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["sh", "-c", "supportbot db upgrade && supportbot serve --host 0.0.0.0 --port 8000"]
