FROM python:3.11-slim
WORKDIR /app
# The install set: pyproject.toml names these folders as orderrelay's subpackages (tests/integration/test_install.py
# installs exactly what this file copies and runs every compose command from it).
COPY pyproject.toml README.md ./
COPY orderrelay ./orderrelay
COPY api ./api
COPY config ./config
COPY schemas ./schemas
COPY providers ./providers
COPY tasks ./tasks
COPY worker ./worker
COPY store ./store
COPY sandbox ./sandbox
RUN pip install --no-cache-dir . && useradd --create-home orderrelay && rm -rf /app/*
USER orderrelay
WORKDIR /home/orderrelay
