"""``tiny-listener run --reload``: run the app in a child process, restart it on code changes."""

from __future__ import annotations

import logging
from typing import Any, Callable, Tuple

from ..optional import require

logger = logging.getLogger("tiny_listener")

# watchfiles' own lines that only repeat what ours say, or describe a normal stop as a warning.
_ROUTINE_WATCHFILES_LINES = (
    "%d change%s detected",
    "process already dead, exit code: %d",
    "received signal %s, raising KeyboardInterrupt",
    "KeyboardInterrupt caught, stopping watch",
)


class _RoutineLinesFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _ROUTINE_WATCHFILES_LINES or logger.isEnabledFor(logging.DEBUG)


def run_with_reload(app_dir: str, target: Callable[..., Any], args: Tuple[Any, ...]) -> int:
    """Run ``target(*args)`` in a new process and restart it whenever a ``.py`` file under
    ``app_dir`` changes, until Ctrl-C or SIGTERM; return how many times it restarted.

    The app is stopped with SIGINT, so it shuts down gracefully (watchfiles kills it if it is
    still running 5 s later). Raises ``ImportError`` with an install hint if watchfiles is not
    installed (extra ``reload``).
    """
    watchfiles: Any = require("watchfiles", extra="reload")
    logging.getLogger("watchfiles.main").addFilter(_RoutineLinesFilter())
    logger.info("watching %s for changes to .py files (--reload)", app_dir)
    reloads: int = watchfiles.run_process(
        app_dir,
        target=target,
        args=args,
        target_type="function",
        watch_filter=watchfiles.PythonFilter(),
        callback=_log_changes,
    )
    return reloads


def _log_changes(changes: Any) -> None:
    paths = sorted({path for _, path in changes})
    logger.info("restarting: %s changed", ", ".join(paths))
