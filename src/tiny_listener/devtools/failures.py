"""What the ``tiny-listener`` commands print when an exception stops them.

A failure that tiny-listener raised because of a setting or the environment (a missing extra,
a bad URL, a port in use, a listener without ``listen()``) is one line and a hint: its
traceback only shows tiny-listener's insides. An exception raised by the user's own code keeps
its traceback, without the command's frames (click, importlib) around it.

Who raised is read from the traceback, innermost frame first: the first frame that belongs to
the user's code or to tiny-listener decides. Frames of the standard library and of installed
packages belong to whoever called them.
"""

from __future__ import annotations

import errno
import sysconfig
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Iterable, Tuple

from ..errors import ListenerError
from ..optional import MissingExtraError

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# tiny-listener's frames that only import or start the user's code: an exception raised below
# them, with no tiny-listener frame in between, is the user's code's.
COMMAND_FILES = frozenset(PACKAGE_DIR / name for name in ("cli.py", "importer.py", "__main__.py"))
# Exceptions that a setting or the environment causes, when tiny-listener raises them.
SETTING_ERRORS = (OSError, ValueError, TypeError, NotImplementedError, ListenerError)
LIBRARY_DIRS = tuple(
    Path(path).resolve()
    for path in {sysconfig.get_paths()[name] for name in ("stdlib", "platstdlib", "purelib", "platlib")}
)
DEBUG_HINT = "--log-level debug shows the traceback"


@dataclass(frozen=True)
class Failure:
    """How a command reports an exception: ``summary`` (one line), a ``hint`` (or None), and
    whether its traceback helps (``traceback_helps``: raised by the user's code, or a bug)."""

    summary: str
    hint: str | None
    traceback_helps: bool

    def message(self, subject: str, debug_hint: bool = True) -> str:
        """The text after ``Error: ``: ``subject: summary``, then a ``Hint:`` line if there is a
        hint, ending with how to see the traceback if ``debug_hint``."""
        text = f"{subject}: {self.summary}"
        if self.hint is None:
            return text
        return f"{text}\nHint: {self.hint}; {DEBUG_HINT}" if debug_hint else f"{text}\nHint: {self.hint}"


def explain(exc: BaseException, user_paths: Iterable[Path] = ()) -> Failure:
    """Return how to report ``exc``. ``user_paths`` are files or directories of the user's
    code that may sit among installed packages (the app's own package, if installed)."""
    if isinstance(exc, MissingExtraError):
        return Failure(str(exc), None, traceback_helps=False)  # its message is the install hint
    owner, user_frame = _raised_by(exc.__traceback__, tuple(Path(path).resolve() for path in user_paths))
    summary = f"{type(exc).__name__}: {_text(exc)}"
    if owner == "user" or not isinstance(exc, SETTING_ERRORS):
        return Failure(summary, None, traceback_helps=True)
    return Failure(summary, _hint(exc, user_frame), traceback_helps=False)


def format_user_traceback(exc: BaseException) -> str:
    """``exc`` with its traceback, minus the command's outer frames (click, runpy, importlib,
    tiny-listener's command modules) that every such traceback starts with."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and _is_command_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _text(exc: BaseException) -> str:
    # OSError's str() starts with "[Errno 98]"; its strerror is the readable part.
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return exc.strerror
    return str(exc)


def _hint(exc: BaseException, user_frame: traceback.FrameSummary | None) -> str:
    if isinstance(exc, NotImplementedError):
        return (
            "a listener receives messages in `async def listen(self)` or from the sources it hosts: define "
            "listen() in your Listener subclass, add a source (app.add_source(HTTPSource(...))), or use a "
            "listener that has one (HTTPListener, TCPListener, a broker listener)"
        )
    if isinstance(exc, OSError):
        if exc.errno == errno.EADDRINUSE:
            return "another process is listening on this address: stop it, or choose another port with --port"
        if exc.errno == errno.EADDRNOTAVAIL:
            return "no network interface of this machine has this address: choose another with --host"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "ports below 1024 need privileges: choose a higher one with --port"
        return "check the address or URL the listener was given, and that what it connects to is running"
    if user_frame is not None:  # a call of the user's that tiny-listener refused
        return f"see {user_frame.filename}, line {user_frame.lineno}"
    return "check the settings the listener was given (its URL, its options)"


def _raised_by(tb: TracebackType | None, user_paths: Tuple[Path, ...]) -> Tuple[str, traceback.FrameSummary | None]:
    """Return who raised (``"user"`` or ``"tiny_listener"``) and the innermost frame of the
    user's code (None if there is none)."""
    owner: str | None = None
    for frame in reversed(traceback.extract_tb(tb)):
        kind = _kind(frame.filename, user_paths)
        if owner is None and kind in ("user", "command", "tiny_listener"):
            owner = "tiny_listener" if kind == "tiny_listener" else "user"
        if kind == "user":
            return owner or "user", frame
    return owner or "user", None


def _kind(filename: str, user_paths: Tuple[Path, ...]) -> str:
    if filename.startswith("<frozen "):
        return "library"
    if filename.startswith("<"):
        return "user"  # python -c, exec()
    path = Path(filename).resolve()
    if path in COMMAND_FILES:
        return "command"
    if _under(path, (PACKAGE_DIR,)):
        return "tiny_listener"
    if _under(path, user_paths):
        return "user"
    if _under(path, LIBRARY_DIRS):
        return "library"
    return "user"


def _under(path: Path, roots: Tuple[Path, ...]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _is_command_frame(filename: str) -> bool:
    if filename.startswith(("<frozen importlib", "<frozen runpy")):
        return True
    path = Path(filename).resolve()
    return path in COMMAND_FILES or path.name == "runpy.py" or path.parent.name in ("click", "importlib")
