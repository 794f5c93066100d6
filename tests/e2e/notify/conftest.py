"""Fixtures shared with other folders (tests/support)."""

from tests.support.receivers import mailbox, receiver  # noqa: F401
