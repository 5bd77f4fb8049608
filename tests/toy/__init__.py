"""A sixth provider, from the test tree: its module, its schema, its sandbox (tests/e2e/test_toy_provider.py)."""
