"""Celery tasks, thin: decode ids, call the pipeline's plain functions, publish the follow-up messages."""
