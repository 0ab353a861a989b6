"""The ``tiny-listener`` command.

``tiny-listener [OPTIONS] MODULE:ATTR`` runs a listener, as in 1.2; it is short for
``tiny-listener run [OPTIONS] MODULE:ATTR``. Other commands sit beside ``run`` in the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List

import click

from . import __version__
from .devtools.asyncapi import asyncapi_document, render
from .devtools.failures import explain, format_user_traceback
from .devtools.logs import log_events, use_json_format
from .devtools.oneshot import render_result, run_one_event
from .devtools.openapi import openapi_document
from .devtools.publishing import CannotPublish, publish_once, publishing_source
from .devtools.routes import format_json, format_table, route_rows
from .errors import EventNotFound
from .importer import ImportFromStringError, import_from_string
from .listener import Listener
from .optional import MissingExtraError
from .signals import is_main_thread
from .workers import Supervisor, bind_socket, inherited_socket, stop_with_supervisor

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


class FailureReport(logging.Filter):
    """Reports the exception that stops a command, once.

    ``with report.reporting():`` turns an exception into ``Error: APP: Type: message`` and a
    ``Hint:`` line, exit status 1, when tiny-listener raised it because of a setting or the
    environment (see :mod:`tiny_listener.devtools.failures`); an exception raised by the
    user's code is shown with its traceback first. At ``log_level`` ``"debug"`` every
    traceback is shown; ``log_level`` None: the command has no ``--log-level``.

    As a logging filter (installed by ``reporting()``), it holds back the core's record of a
    failed ``listen()`` or source (marked ``intake_failure``) whose exception the one line will
    report, so that the failure is not said twice.
    """

    def __init__(self, app: str, log_level: str | None) -> None:
        super().__init__()
        self.app = app
        self.debug = log_level == "debug"
        self.debug_hint = log_level is not None and not self.debug
        self._logged: List[BaseException] = []

    def user_paths(self) -> List[Path]:
        """Where the app's top-level module is, even among installed packages."""
        try:
            spec = importlib.util.find_spec(self.app.partition(":")[0].split(".")[0])
        except (ImportError, ValueError):
            return []
        if spec is None:
            return []
        return [Path(path) for path in (*(spec.submodule_search_locations or ()), spec.origin) if path]

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or getattr(record, "intake_failure", None) is None:
            return True
        self._logged.append(exc)
        return self.debug or explain(exc, self.user_paths()).traceback_helps

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Report an exception raised in the block; ``click`` exceptions pass through."""
        handlers = logging.getLogger().handlers
        for handler in handlers:
            handler.addFilter(self)
        try:
            yield
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            failure = explain(exc, self.user_paths())
            already_logged = any(logged is exc for logged in self._logged)
            if (failure.traceback_helps or self.debug) and not already_logged:
                click.echo(format_user_traceback(exc), err=True, nl=False)
            raise click.ClickException(failure.message(self.app, self.debug_hint)) from None
        finally:
            for handler in handlers:
                handler.removeFilter(self)


def restore_default_sigint() -> None:
    """Make SIGINT interrupt again if this process was started with it ignored (as a ``&`` job
    of a script is): ``run`` stops on SIGINT however it was started."""
    if is_main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# Listener attributes that ``run`` options set, and the option that sets each.
LISTENER_OPTIONS = {"host": "--host", "port": "--port", "parser": "--http", "sock": "--fd"}


def socket_owner(listener: Listener[Any]) -> Any:
    """What ``--host``, ``--port``, ``--http`` and ``--fd`` set: the listener when it has a
    ``port`` (HTTPListener, TCPListener, a 1.2-style server), else the first source it hosts
    that serves a socket (an HTTPSource or TCPSource beside a broker consumer), else the
    listener."""
    if hasattr(listener, "port"):
        return listener
    return next((source for source in listener.sources if hasattr(source, "sock")), listener)


def apply_listener_options(listener: Listener[Any], **values: Any) -> None:
    """Set the attributes of the listener's :func:`socket_owner` from ``run`` options
    (``host``, ``port``, ``parser``, ``sock``); a value of ``None`` means the option was not
    given.

    Raises ``click.UsageError`` if an option is given to a listener without that attribute.
    """
    owner = socket_owner(listener)
    for name, value in values.items():
        if value is None:
            continue
        if not hasattr(owner, name):
            option = LISTENER_OPTIONS[name]
            raise click.UsageError(f"{option} is not supported by {type(listener).__name__} (it has no {name!r})")
        setattr(owner, name, value)


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
    "--fd",
    type=click.IntRange(min=0),
    default=None,
    help="Serve on the listening TCP socket inherited as this file descriptor, instead of binding --host/--port.",
)
@click.option(
    "--http",
    "parser",
    type=click.Choice(["h11", "httptools"]),
    default=None,
    help="HTTP parser, for the HTTP listener (default h11; httptools needs the httptools extra).",
)
@click.option("--shutdown-timeout", type=float, default=None, help="Seconds to wait for in-flight events at shutdown.")
@click.option(
    "--cancel-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds each shutdown step waits for cancelled tasks to end (default 5).",
)
@click.option("--reload", is_flag=True, help="Restart when a .py file under --app-dir changes (extra: reload).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Run this many worker processes of the app, restarted if they crash (they share --host/--port).",
)
@click.argument("app")
def run(reload: bool, workers: int | None, **options: Any) -> None:
    """Run the listener APP (MODULE:ATTR) until Ctrl-C or SIGTERM."""
    restore_default_sigint()
    # Every other option is serve()'s, named once there: the --reload child gets them all too.
    if workers is not None:
        if reload:
            raise click.UsageError("--workers and --reload cannot be used together (--reload runs one process)")
        run_workers(workers, **options)
        return
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
    fd: int | None,
    parser: str | None,
    shutdown_timeout: float | None,
    cancel_timeout: float | None,
) -> None:
    """Configure logging, import APP and run it: the body of ``run``, also run by ``--reload``
    in its child process and by each ``--workers`` worker. With ``--log-level debug`` each
    event is logged (see devtools.logs). A start-up failure is reported by
    :class:`FailureReport`."""
    stop_with_supervisor()
    configure_log_output(log_level, log_format)
    with FailureReport(app, log_level).reporting():
        listener = load_listener(app, app_dir)
        sock = inherited_socket(fd) if fd is not None else None
        apply_listener_options(listener, host=host, port=port, parser=parser, sock=sock)
        if shutdown_timeout is not None:
            listener.shutdown_timeout = shutdown_timeout
        if cancel_timeout is not None:
            listener.cancel_timeout = cancel_timeout
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
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


# Seconds the supervisor waits for its workers beyond their own shutdown_timeout, before it
# kills them: time for the shutdown hooks, the cancelled tasks and the loop to close.
WORKER_STOP_MARGIN = 5.0


def run_workers(
    workers: int,
    app: str,
    app_dir: str,
    log_level: str,
    log_format: str,
    host: str | None,
    port: int | None,
    fd: int | None,
    parser: str | None,
    shutdown_timeout: float | None,
    cancel_timeout: float | None,
) -> None:
    """``run --workers``: import APP once to check it and find what its workers share, then
    run each worker as ``tiny-listener run`` of APP under a :class:`Supervisor`.

    A listener with a ``sock`` attribute (HTTP, TCP), or hosting a source with one, gets one
    socket bound here (or the one ``--fd`` names) that all workers accept connections on; a
    listener without one (the broker listeners) shares its consumer group. Exits with the supervisor's status."""
    configure_log_output(log_level, log_format)
    with FailureReport(app, log_level).reporting():
        listener = load_listener(app, app_dir)
        apply_listener_options(listener, host=host, port=port, parser=parser)
        sock = shared_socket(listener, fd)
    command = [sys.executable, "-m", "tiny_listener", "run", "--app-dir", app_dir]
    command += ["--log-level", log_level, "--log-format", log_format]
    if parser is not None:
        command += ["--http", parser]
    if shutdown_timeout is not None:
        command += ["--shutdown-timeout", str(shutdown_timeout)]
    if cancel_timeout is not None:
        command += ["--cancel-timeout", str(cancel_timeout)]
    if sock is not None:
        command += ["--fd", str(sock.fileno())]
        logging.getLogger("tiny_listener.workers").info(
            "%d workers of %s share the socket on %s:%d", workers, app, *sock.getsockname()[:2]
        )
    else:
        logging.getLogger("tiny_listener.workers").info("%d workers of %s", workers, app)
    # A longer --cancel-timeout than the margin lengthens the margin.
    stop_timeout = (listener.shutdown_timeout if shutdown_timeout is None else shutdown_timeout) + max(
        WORKER_STOP_MARGIN, listener.cancel_timeout if cancel_timeout is None else cancel_timeout
    )
    supervisor = Supervisor(
        [*command, app], workers, stop_timeout=stop_timeout, pass_fds=() if sock is None else (sock.fileno(),)
    )
    try:
        status = supervisor.run()
    finally:
        if sock is not None:
            sock.close()
    if status:
        raise click.exceptions.Exit(status)


def shared_socket(listener: Listener[Any], fd: int | None) -> socket.socket | None:
    """The socket ``--workers`` share: the one ``fd`` names, else one bound to the listener's
    host and port; None for a listener that accepts no connections (no ``sock`` attribute).

    Raises ``click.UsageError`` for a listener with a ``port`` but no ``sock``: it binds its
    port itself, and its workers would fight over it."""
    owner = socket_owner(listener)
    if not hasattr(owner, "sock"):
        if hasattr(owner, "port") or fd is not None:
            raise click.UsageError(
                f"--workers cannot share the port of {type(listener).__name__}: it binds it itself "
                "(HTTPListener and TCPListener take the socket the supervisor binds)"
            )
        return None
    if fd is not None:
        return inherited_socket(fd)
    return bind_socket(owner.host, owner.port, getattr(owner, "backlog", 1024))


@main.command()
@app_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.argument("app")
def routes(app_dir: str, as_json: bool, app: str) -> None:
    """Print the route table of APP (MODULE:ATTR).

    Routes are listed in match order: an event runs the first route that matches its path.
    """
    with FailureReport(app, log_level=None).reporting():
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
    with FailureReport(app, log_level=None).reporting():
        listener = load_listener(app, app_dir)
    document = asyncapi_document(listener, title=title or app, version=app_version)
    click.echo(render_document(document, as_yaml))


@main.command()
@contract_options
def openapi(app_dir: str, as_yaml: bool, title: str | None, app_version: str, app: str) -> None:
    """Print the OpenAPI 3.1 document of APP (MODULE:ATTR), an HTTP listener: a path per
    METHOD:/path route, with its parameters, request body and 422 answer."""
    with FailureReport(app, log_level=None).reporting():
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
    with FailureReport(app, log_level).reporting():
        listener = load_listener(app, app_dir)
    try:
        result = run_one_event(listener, path, data=data, cid=cid, timeout=timeout)
    except EventNotFound as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(f"event {path!r} failed: {exc!r}") from None
    click.echo(render_result(result))


@main.command()
@app_dir_option
@click.option("--data", "data_json", default=None, help="The message data, as JSON (default: {}).")
@click.option("--source", "source_name", default=None, help="The broker source to send through, by name.")
@click.option("--request", "as_request", is_flag=True, help="Send a request and print the reply (NATS, RabbitMQ).")
@click.option(
    "--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the broker (and the reply)."
)
@click.argument("app")
@click.argument("path")
def publish(
    app_dir: str, data_json: str | None, source_name: str | None, as_request: bool, timeout: float, app: str, path: str
) -> None:
    """Send one message PATH through the broker of APP (MODULE:ATTR), encoded with its codec.

    Connects, publishes, waits for the broker's confirmation and closes; nothing is consumed.
    With --request, prints the reply as JSON. Exits 1, with one line saying why, if APP hosts
    no broker source that can publish, or the broker is down or does not take PATH.
    """
    data: Any = {}
    if data_json is not None:
        try:
            data = json.loads(data_json)
        except ValueError as exc:
            raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--data") from None
    with FailureReport(app, log_level=None).reporting():
        listener = load_listener(app, app_dir)
    try:
        source = publishing_source(listener, source_name)
        reply = asyncio.run(publish_once(source, path, data, timeout=timeout, request=as_request))
    except CannotPublish as exc:
        raise click.ClickException(str(exc)) from None
    if as_request:
        click.echo(render_result(reply))


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
