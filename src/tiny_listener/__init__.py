"""tiny-listener: an asyncio event framework. Messages in, async handlers run, nothing lost."""

from __future__ import annotations

__version__ = "1.3.0"

from ._types import Scope as Scope
from .context import Context as Context
from .convertors import Convertor as Convertor
from .convertors import register_convertor as register_convertor
from .errors import ContextAlreadyExists as ContextAlreadyExists
from .errors import ContextNotFound as ContextNotFound
from .errors import DuplicateListener as DuplicateListener
from .errors import EventAlreadyDone as EventAlreadyDone
from .errors import EventAlreadyExists as EventAlreadyExists
from .errors import EventDataError as EventDataError
from .errors import EventFailed as EventFailed
from .errors import EventNotFound as EventNotFound
from .errors import FieldError as FieldError
from .errors import InjectionError as InjectionError
from .errors import ListenerError as ListenerError
from .errors import ListenerNotFound as ListenerNotFound
from .errors import NoReply as NoReply
from .errors import PathParamsError as PathParamsError
from .errors import RouteError as RouteError
from .errors import ValidationError as ValidationError
from .event import Event as Event
from .importer import import_from_string as import_from_string
from .injection import Data as Data
from .injection import Depends as Depends
from .injection import Hook as Hook
from .injection import Param as Param
from .injection import check_coro_func as check_coro_func
from .injection import depend as depend
from .lifecycle import EventState as EventState
from .lifecycle import EventStateError as EventStateError
from .listener import Listener as Listener
from .routing import Route as Route
from .routing import RouteShadowedWarning as RouteShadowedWarning
from .routing import RouteTable as RouteTable
from .routing import compile_path as compile_path
from .running import get_current_running_listener as get_current_running_listener
from .signals import is_main_thread as is_main_thread

__all__ = (
    "__version__",
    "check_coro_func",
    "compile_path",
    "Context",
    "ContextAlreadyExists",
    "ContextNotFound",
    "Convertor",
    "Data",
    "depend",
    "Depends",
    "DuplicateListener",
    "Event",
    "EventAlreadyDone",
    "EventAlreadyExists",
    "EventDataError",
    "EventFailed",
    "EventNotFound",
    "EventState",
    "EventStateError",
    "FieldError",
    "get_current_running_listener",
    "Hook",
    "import_from_string",
    "InjectionError",
    "is_main_thread",
    "Listener",
    "ListenerError",
    "ListenerNotFound",
    "NoReply",
    "Param",
    "PathParamsError",
    "register_convertor",
    "Route",
    "RouteError",
    "RouteShadowedWarning",
    "RouteTable",
    "Scope",
    "ValidationError",
)
