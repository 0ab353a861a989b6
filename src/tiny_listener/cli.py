"""The ``tiny-listener`` command: ``tiny-listener [OPTIONS] MODULE:ATTR``."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from . import __version__
from .importer import ImportFromStringError, import_from_string
from .listener import Listener

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def _show_version(ctx: click.Context, _: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"tiny-listener {__version__}")
        ctx.exit()


def load_listener(app: str, app_dir: str) -> Listener[Any]:
    """Import ``app`` with ``app_dir`` first on ``sys.path``; raise ``click.ClickException``
    (exit status 1, no traceback) for a typo or an object that is not a Listener."""
    sys.path.insert(0, app_dir)
    try:
        listener = import_from_string(app)
    except ImportFromStringError as exc:
        raise click.ClickException(str(exc)) from None
    if not isinstance(listener, Listener):
        raise click.ClickException(f"{app!r} is {type(listener).__name__}, not a tiny_listener.Listener")
    return listener


def configure_logging(level: str) -> None:
    """Send the ``tiny_listener`` logs to stderr as ``LEVEL: message`` lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--app-dir", "app_dir", default=".", show_default=True, help="Directory to import MODULE from.")
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Log level of the tiny_listener logger and the app's loggers.",
)
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds to wait for in-flight events at shutdown.")
@click.option(
    "--version", is_flag=True, callback=_show_version, expose_value=False, is_eager=True, help="Show the version."
)
@click.argument("app")
def main(app_dir: str, log_level: str, shutdown_timeout: float | None, app: str) -> None:
    """Run the listener APP, given as MODULE:ATTR (for example http_web:app)."""
    configure_logging(log_level)
    listener = load_listener(app, app_dir)
    if shutdown_timeout is not None:
        listener.shutdown_timeout = shutdown_timeout
    listener.run()
