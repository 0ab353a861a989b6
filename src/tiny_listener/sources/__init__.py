"""Sources: transports (HTTP, TCP, brokers) that any listener can host.

See :class:`Source` and :meth:`tiny_listener.Listener.add_source`.
"""

from __future__ import annotations

from .base import Source as Source
from .base import SourceNotAttached as SourceNotAttached
from .base import SourceState as SourceState

__all__ = ("Source", "SourceNotAttached", "SourceState")
