"""A message for a publish/subscribe transport, as a part that is not the transport hands it over."""

from __future__ import annotations

from typing import NamedTuple


class Publication(NamedTuple):
    """One message: where it goes, what it says, and whether the broker keeps it for later subscribers."""

    topic: str
    payload: str
    retain: bool = False
