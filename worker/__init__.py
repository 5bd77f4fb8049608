"""The Celery app and process start-up: event loop, HTTP session and database pool, made once per process."""
