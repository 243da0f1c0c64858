"""Errors a user can act on.  Each carries a one-line message and an exit code."""

from __future__ import annotations

from deliverck.model import EXIT_INCOMPLETE, EXIT_USAGE


class DeliverckError(Exception):
    """deliverck could not do what was asked."""

    exit_code = EXIT_INCOMPLETE


class UsageError(DeliverckError):
    """Bad usage or bad input: say what was wrong and what to do instead."""

    exit_code = EXIT_USAGE


class IncompleteError(DeliverckError):
    """The audit could not complete (e.g. no resolver answered)."""

    exit_code = EXIT_INCOMPLETE
