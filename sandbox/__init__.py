"""Provider simulators: one aiohttp app serving every provider under its own base path, plus ``/_sandbox/``."""
