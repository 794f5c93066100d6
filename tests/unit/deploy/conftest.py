"""Fixtures shared with other folders (tests/support)."""

from tests.support.deploy import compose, services  # noqa: F401
