"""Temperature sensors over MQTT, as in the tiny-listener 1.2 docs, on the built-in listener.

Needs Mosquitto on 127.0.0.1:1883 and ``pip install 'tiny-listener[mqtt]'``:

    tiny-listener --app-dir examples --log-level info mqtt_sensors:app

It subscribes to ``/iot/home/+/temperature`` (from the route below), publishes a reading for
two rooms every 3 seconds and prints what it receives:

    INFO: living_room   13 °C
    INFO: kitchen       15 °C

Publish your own with ``mosquitto_pub -q 1 -t /iot/home/attic/temperature -m 21``.
"""

import asyncio
from random import randint

from tiny_listener import Data, Param
from tiny_listener.mqtt import MQTTListener

app = MQTTListener("mqtt://127.0.0.1:1883", qos=1)


@app.on_event("/iot/home/{room}/temperature")
async def temperature(room: Param, payload: Data) -> None:
    print("INFO: {:<13} {} °C".format(room, payload.decode()))


async def publish_readings() -> None:
    while True:
        await app.publish("/iot/home/living_room/temperature", str(randint(10, 30)))
        await app.publish("/iot/home/kitchen/temperature", str(randint(10, 30)))
        await asyncio.sleep(3)


@app.startup
async def start_sensors() -> None:
    # A background task owned by the listener: cancelled at shutdown.
    app.spawn(publish_readings(), name="sensors")
