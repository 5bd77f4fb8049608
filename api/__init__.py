"""The HTTP intake API (aiohttp): submit orders, read them, retry and cancel them; OpenAPI from marshmallow."""
