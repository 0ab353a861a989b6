"""The 1.2 tutorial's web app on the built-in HTTP listener.

    tiny-listener --app-dir examples --host 127.0.0.1 --port 8123 http_app:app

GET /user/{username} -> "Hello, {username}!"; GET /throw -> 500; anything else -> "Welcome!".
"""

from tiny_listener import Param
from tiny_listener.http import HTTPListener

app = HTTPListener()


@app.on_event("GET:/user/{username}")
async def hello(username: Param):
    return f"Hello, {username}!"


@app.on_event("GET:/throw")
async def throw():
    raise RuntimeError("this handler fails on purpose: the client gets a 500")


@app.on_event()
async def home():
    return "Welcome!"
