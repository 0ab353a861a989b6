"""One service, two sources: a NATS JetStream consumer that also serves HTTP.

Needs nats-server with JetStream (``nats-server -js``; NATS_URL, default
nats://127.0.0.1:4222) and ``pip install 'tiny-listener[nats,http,prometheus]'``. Run it:

    tiny-listener --app-dir examples service:app          # HTTP on 127.0.0.1:8080 (HTTP_PORT)

then publish payments and read them back:

    nats pub payments.ann '{"amount": 12}'                 # or any JetStream client
    curl http://127.0.0.1:8080/customers/ann               # {"customer": "ann", "paid": 12}
    curl http://127.0.0.1:8080/readyz                      # 200 while NATS is there, else 503
    curl http://127.0.0.1:8080/metrics                     # Prometheus text

The consumer and the HTTP server share one route table and one shutdown: Ctrl-C stops taking
payments and requests, lets the ones in flight finish (and acknowledges them), then closes.
"""

import os
from typing import Dict

from tiny_listener import Data, Param
from tiny_listener.http import HTTPSource
from tiny_listener.nats import NATSListener
from tiny_listener.observability import RouteMetrics
from tiny_listener.observability.prometheus import PrometheusExporter

app = NATSListener(
    os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
    stream="PAYMENTS",
    durable="ledger",
    reconnect_backoff=0.2,
)
exporter = PrometheusExporter(RouteMetrics().install(app))
app.add_source(HTTPSource(port=int(os.environ.get("HTTP_PORT", "8080")), health=True, metrics=exporter))

paid: Dict[str, int] = {}  # a real service keeps this in its database


@app.on_event("payments.{customer}")
async def payment(customer: Param, amount: Data) -> None:
    paid[customer] = paid.get(customer, 0) + amount


@app.on_event("GET:/customers/{customer}")
async def customer_total(customer: Param) -> Dict[str, object]:
    return {"customer": customer, "paid": paid.get(customer, 0)}
