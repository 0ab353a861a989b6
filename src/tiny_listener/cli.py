"""The ``tiny-listener`` command.

``tiny-listener [OPTIONS] MODULE:ATTR`` runs a listener, as in 1.2; it is short for
``tiny-listener run [OPTIONS] MODULE:ATTR``. Other commands sit beside ``run`` in the group.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any, Dict, List

import click

from . import __version__
from .devtools.asyncapi import asyncapi_document, render
from .devtools.logs import log_events, use_json_format
from .devtools.oneshot import render_result, run_one_event
from .devtools.openapi import openapi_document
from .devtools.routes import format_json, format_table, route_rows
from .errors import EventNotFound
from .importer import ImportFromStringError, import_from_string
from .listener import Listener
from .optional import MissingExtraError

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("text", "json")


class DefaultGroup(click.Group):
    """A group whose first argument, when it names no command, is the ``run`` command's."""

    default_command = "run"

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        # Only the first argument can name a command: "--app-dir routes" is an option value.
        first = args[0] if args else None
        wants_group_option = first in ("--help", "-h", "--version")
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


# Listener attributes that ``run`` options set, and the option that sets each.
LISTENER_OPTIONS = {"host": "--host", "port": "--port", "parser": "--http"}


def apply_listener_options(listener: Listener[Any], **values: Any) -> None:
    """Set listener attributes from ``run`` options (``host``, ``port``, ``parser``); a value of
    ``None`` means the option was not given.

    Raises ``click.UsageError`` if an option is given to a listener without that attribute.
    """
    for name, value in values.items():
        if value is None:
            continue
        if not hasattr(listener, name):
            option = LISTENER_OPTIONS[name]
            raise click.UsageError(f"{option} is not supported by {type(listener).__name__} (it has no {name!r})")
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


log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="text: LEVEL: message lines; json: one JSON object per line, with the structured fields.",
)


@main.command()
@app_dir_option
@log_level_option
@log_format_option
@click.option("--host", default=None, help="Address to listen on, for listeners that have one.")
@click.option("--port", type=int, default=None, help="Port to listen on, for listeners that have one.")
@click.option(
    "--http",
    "parser",
    type=click.Choice(["h11", "httptools"]),
    default=None,
    help="HTTP parser, for the HTTP listener (default h11; httptools needs the httptools extra).",
)
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds to wait for in-flight events at shutdown.")
@click.option("--reload", is_flag=True, help="Restart when a .py file under --app-dir changes (extra: reload).")
@click.argument("app")
def run(reload: bool, **options: Any) -> None:
    """Run the listener APP (MODULE:ATTR) until Ctrl-C or SIGTERM."""
    # Every other option is serve()'s, named once there: the --reload child gets them all too.
    if reload:
        configure_log_output(options["log_level"], options["log_format"])
        try:
            from .devtools.reload import run_with_reload

            run_with_reload(options["app_dir"], functools.partial(serve_in_child, **options), ())
        except MissingExtraError as exc:
            raise click.ClickException(str(exc)) from None
        return
    serve(**options)


def configure_log_output(log_level: str, log_format: str) -> None:
    """Send log records at ``log_level`` and above to stderr, as ``LEVEL: message`` lines or,
    with ``log_format`` ``"json"``, as one JSON object per line."""
    configure_logging(log_level)
    if log_format == "json":
        use_json_format()


def serve(
    app: str,
    app_dir: str,
    log_level: str,
    log_format: str,
    host: str | None,
    port: int | None,
    parser: str | None,
    shutdown_timeout: float | None,
) -> None:
    """Configure logging, import APP and run it: the body of ``run``, also run by ``--reload``
    in its child process. With ``--log-level debug`` each event is logged (see devtools.logs)."""
    configure_log_output(log_level, log_format)
    listener = load_listener(app, app_dir)
    apply_listener_options(listener, host=host, port=port, parser=parser)
    if shutdown_timeout is not None:
        listener.shutdown_timeout = shutdown_timeout
    log_events(listener)
    listener.run()


def serve_in_child(**options: Any) -> None:
    """:func:`serve` in a ``--reload`` child process: a usage error exits it with its message,
    as it would the command, instead of a multiprocessing traceback."""
    try:
        serve(**options)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


@main.command()
@app_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.argument("app")
def routes(app_dir: str, as_json: bool, app: str) -> None:
    """Print the route table of APP (MODULE:ATTR).

    Routes are listed in match order: an event runs the first route that matches its path.
    """
    listener = load_listener(app, app_dir)
    rows = route_rows(listener)
    click.echo(format_json(rows) if as_json else format_table(rows))


def contract_options(fn: Any) -> Any:
    """The options of the ``asyncapi`` and ``openapi`` commands."""
    for option in reversed(
        [
            app_dir_option,
            click.option("--yaml", "as_yaml", is_flag=True, help="Print YAML instead of JSON (extra: yaml)."),
            click.option("--title", default=None, help="info.title of the document (default: APP)."),
            click.option("--app-version", default="1.0.0", show_default=True, help="info.version of the document."),
            click.argument("app"),
        ]
    ):
        fn = option(fn)
    return fn


@main.command()
@contract_options
def asyncapi(app_dir: str, as_yaml: bool, title: str | None, app_version: str, app: str) -> None:
    """Print the AsyncAPI 3.0 document of APP (MODULE:ATTR): a channel and a receive operation
    per route, the message each handler declares, the listener's server."""
    listener = load_listener(app, app_dir)
    document = asyncapi_document(listener, title=title or app, version=app_version)
    click.echo(render_document(document, as_yaml))


@main.command()
@contract_options
def openapi(app_dir: str, as_yaml: bool, title: str | None, app_version: str, app: str) -> None:
    """Print the OpenAPI 3.1 document of APP (MODULE:ATTR), an HTTP listener: a path per
    METHOD:/path route, with its parameters, request body and 422 answer."""
    listener = load_listener(app, app_dir)
    try:
        document = openapi_document(listener, title=title or app, version=app_version)
    except TypeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(render_document(document, as_yaml))


def render_document(document: Dict[str, Any], as_yaml: bool) -> str:
    """Return ``document`` as JSON or YAML; a missing YAML library is a usage error."""
    try:
        return render(document, as_yaml=as_yaml)
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@app_dir_option
@log_level_option
@click.option("--data", "data_json", default=None, help="The event data, a JSON object.")
@click.option("--cid", default=None, help="Context id to run the event in (default: a new anonymous context).")
@click.option("--timeout", type=float, default=None, help="Seconds the handler may take.")
@click.argument("app")
@click.argument("path")
def trigger(
    app_dir: str, log_level: str, data_json: str | None, cid: str | None, timeout: float | None, app: str, path: str
) -> None:
    """Run one event PATH through APP (MODULE:ATTR) and print its result.

    Runs the startup hooks, the event and the shutdown hooks, not listen(). Prints the
    handler's result as JSON (its repr if it is not serialisable); exits 1 on error.
    """
    data = parse_event_data(data_json)
    configure_logging(log_level)
    listener = load_listener(app, app_dir)
    try:
        result = run_one_event(listener, path, data=data, cid=cid, timeout=timeout)
    except EventNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"event {path!r} failed: {exc!r}") from None
    click.echo(render_result(result))


def parse_event_data(data_json: str | None) -> Dict[str, Any] | None:
    """Return ``--data`` decoded; raise ``click.BadParameter`` unless it is a JSON object."""
    if data_json is None:
        return None
    try:
        data = json.loads(data_json)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"must be a JSON object, not {type(data).__name__}", param_hint="--data")
    return data
