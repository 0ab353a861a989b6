"""The built-in HTTP/1.1 listener (needs the ``http`` extra: ``pip install 'tiny-listener[http]'``).

    from tiny_listener import Param
    from tiny_listener.http import HTTPListener

    app = HTTPListener()

    @app.on_event("GET:/user/{username}")
    async def hello(username: Param):
        return f"Hello, {username}!"
"""

from __future__ import annotations

from .body import RequestAborted as RequestAborted
from .context import HTTPContext as HTTPContext
from .headers import Headers as Headers
from .limits import Limits as Limits
from .listener import HTTPListener as HTTPListener
from .request import Request as Request
from .responses import HTMLResponse as HTMLResponse
from .responses import JSONResponse as JSONResponse
from .responses import PlainTextResponse as PlainTextResponse
from .responses import Response as Response
from .responses import StreamingResponse as StreamingResponse
from .server import ResponseAlreadyStarted as ResponseAlreadyStarted
from .source import HTTPSource as HTTPSource

__all__ = (
    "Headers",
    "HTMLResponse",
    "HTTPContext",
    "HTTPListener",
    "HTTPSource",
    "JSONResponse",
    "Limits",
    "PlainTextResponse",
    "Request",
    "RequestAborted",
    "Response",
    "ResponseAlreadyStarted",
    "StreamingResponse",
)
