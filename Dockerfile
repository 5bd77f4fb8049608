FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orderrelay ./orderrelay
COPY config ./config
COPY schemas ./schemas
COPY providers ./providers
COPY tasks ./tasks
COPY worker ./worker
COPY store ./store
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && useradd --create-home orderrelay
USER orderrelay
