"""Sources: transports (HTTP, TCP, brokers) that any listener can host.

See :class:`Source` and :meth:`tiny_listener.Listener.add_source`; every broker source is a
:class:`BrokerSource` (the one delivery flow, :mod:`tiny_listener.sources.broker`), and every
listener hosting one as its ``source`` (``NATSListener``...) a
:class:`~tiny_listener.sources.broker_listener.BrokerListener`.
"""

from __future__ import annotations

from ._attribute import SourceAttribute as SourceAttribute
from .base import Source as Source
from .base import SourceNotAttached as SourceNotAttached
from .base import SourceState as SourceState
from .broker import BrokerMessage as BrokerMessage
from .broker import BrokerSource as BrokerSource
from .broker import NotConnected as NotConnected

__all__ = (
    "BrokerMessage",
    "BrokerSource",
    "NotConnected",
    "Source",
    "SourceAttribute",
    "SourceNotAttached",
    "SourceState",
)
