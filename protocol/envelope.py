"""The versioned envelope every frame carries: `{"v", "type", "id", "ts", "body"}`."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field

from protocol.messages import Body

_ids = itertools.count(1)
_prefix = f"{os.getpid():x}-"


def next_id() -> str:
    """A correlation id unique within this process (pid prefix keeps ids distinct across peers)."""
    return f"{_prefix}{next(_ids)}"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded message: its body model plus the envelope fields around it."""

    body: Body
    id: str = field(default_factory=next_id)
    ts: float = field(default_factory=time.time)
