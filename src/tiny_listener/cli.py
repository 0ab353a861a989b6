"""The ``tiny-listener`` command.

``tiny-listener [OPTIONS] MODULE:ATTR`` runs a listener, as in 1.2; it is short for
``tiny-listener run [OPTIONS] MODULE:ATTR``. Other commands sit beside ``run`` in the group.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, List

import click

from . import __version__
from .importer import ImportFromStringError, import_from_string
from .listener import Listener

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no command, is the ``run`` command's."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        first = next((arg for arg in args if not arg.startswith("-")), None)
        wants_group_option = any(arg in ("--help", "-h", "--version") for arg in args[:1])
        if args and not wants_group_option and first not in self.commands:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "[OPTIONS] MODULE:ATTR  |  COMMAND [ARGS]...")


def _show_version(ctx: click.Context, _: Any, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"tiny-listener {__version__}")
        ctx.exit()


def load_listener(app: str, app_dir: str) -> Listener[Any]:
    """Import ``app`` with ``app_dir`` first on ``sys.path``.

    Raises ``click.ClickException`` (exit status 1, no traceback) for a typo or an object that
    is not a Listener; an exception raised by the module itself propagates with its traceback.
    """
    sys.path.insert(0, app_dir)
    try:
        listener = import_from_string(app)
    except ImportFromStringError as exc:
        raise click.ClickException(str(exc)) from None
    if not isinstance(listener, Listener):
        raise click.ClickException(f"{app!r} is {type(listener).__name__}, not a tiny_listener.Listener")
    return listener


def configure_logging(level: str) -> None:
    """Send log records to stderr as ``LEVEL: message`` lines, at ``level`` and above."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())


def apply_network_options(listener: Listener[Any], host: str | None, port: int | None) -> None:
    """Set ``listener.host``/``listener.port`` from ``--host``/``--port``.

    Raises ``click.UsageError`` if given to a listener that has no such attribute.
    """
    for name, value in (("host", host), ("port", port)):
        if value is None:
            continue
        if not hasattr(listener, name):
            raise click.UsageError(f"--{name} is not supported by {type(listener).__name__} (it has no {name!r})")
        setattr(listener, name, value)


app_dir_option = click.option(
    "--app-dir", "app_dir", default=".", show_default=True, help="Directory to import MODULE from."
)
log_level_option = click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Log level of tiny_listener and the app.",
)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, callback=_show_version, expose_value=False, is_eager=True, help="Show the version."
)
def main() -> None:
    """tiny-listener: run an event listener given as MODULE:ATTR (for example http_web:app)."""


@main.command()
@app_dir_option
@log_level_option
@click.option("--host", default=None, help="Address to listen on, for listeners that have one.")
@click.option("--port", type=int, default=None, help="Port to listen on, for listeners that have one.")
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds to wait for in-flight events at shutdown.")
@click.argument("app")
def run(
    app_dir: str, log_level: str, host: str | None, port: int | None, shutdown_timeout: float | None, app: str
) -> None:
    """Run the listener APP (MODULE:ATTR) until Ctrl-C or SIGTERM."""
    configure_logging(log_level)
    listener = load_listener(app, app_dir)
    apply_network_options(listener, host, port)
    if shutdown_timeout is not None:
        listener.shutdown_timeout = shutdown_timeout
    listener.run()
