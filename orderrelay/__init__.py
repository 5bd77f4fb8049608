"""orderrelay: places orders with third-party order APIs on behalf of checkout systems."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("orderrelay")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
