"""Settings read once from the environment, and the Celery configuration built from them."""

from orderrelay.config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
