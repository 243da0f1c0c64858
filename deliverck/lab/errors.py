"""The one error the lab raises."""

from __future__ import annotations

from deliverck.errors import DeliverckError


class LabUnavailable(DeliverckError):
    """The lab cannot run here; str() is one line: what is missing and what to do."""
