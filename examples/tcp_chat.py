"""The chat bot of the tiny-listener 1.2 docs, on the built-in TCP listener.

Run it, then chat with it from another terminal:

    tiny-listener --app-dir examples tcp_chat:app
    nc 127.0.0.1 12345
    hello!
    Huh, go on.
    who are you?
    I am confused, may be you should google it.
    earth is flat.
    Yes, it makes sense to me.

Each line you type is an event whose path is the line itself; the first route that matches
answers. ``--host``/``--port`` change where it listens.
"""

from tiny_listener import Event
from tiny_listener.tcp import TCPContext, TCPListener

app = TCPListener(host="127.0.0.1", port=12345)


@app.on_event("{question:path}?")
async def question(ctx: TCPContext) -> None:
    ctx.send("I am confused, may be you should google it.")


@app.on_event("{statement:path}.")
async def statement(ctx: TCPContext) -> None:
    ctx.send("Yes, it makes sense to me.")


@app.on_event("bye")
async def bye(ctx: TCPContext) -> None:
    ctx.send("Bye!")
    ctx.close()


@app.on_event()
async def anything_else(event: Event) -> None:
    event.ctx.send("Huh, go on.")
