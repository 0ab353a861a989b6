"""A listener process that the fault tests kill in the middle of an event.

    python -m tests.mqtt._worker URL CLIENT_ID TOPIC_PREFIX

It prints ``consuming`` once subscribed (persistent session ``CLIENT_ID``) and
``started <topic>`` when a handler starts, then blocks in it forever.
"""

from __future__ import annotations

import sys

from tests.worker_processes import announce_when_consuming, block_forever
from tiny_listener.mqtt import MQTTListener

app = MQTTListener(sys.argv[1], client_id=sys.argv[2])
app.on_event(sys.argv[3] + "/{rest:path}")(block_forever)
announce_when_consuming(app)

if __name__ == "__main__":
    app.run()
