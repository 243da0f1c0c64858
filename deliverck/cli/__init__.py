"""Command line: one thin module per command (check, spf, explain, bulk, audit, checks, lab),
registered here, in the order of `deliverck --help`.  Each parses, builds a Config through
deliverck.options, calls one engine function and renders.

`deliverck example.com` means `deliverck check example.com`: when the first
argument is not a command, `check` is implied.

Start-up (issue 16): importing this package imports neither typer nor any command.  The app is
built on first use (`main()`, or `deliverck.cli.app`), and `deliverck --version` alone is answered
before typer is imported at all; each command imports its engine and checks when it runs.
tests/test_startup.py keeps it so.
"""

from __future__ import annotations

import errno
import sys
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from deliverck import __version__

if TYPE_CHECKING:
    import typer

# Nothing else at module level: the console script imports this package for `--version` too, and
# the model's dataclasses, idna and typer would triple its time (tests/test_startup.py).

_HELP = "Predict the bounces (NDRs) a mail server will cause, before it causes them."


def _build_app(only_check: bool = False) -> typer.Typer:
    """The typer app with every command registered; typer and the command modules cost tens of
    milliseconds, which `deliverck --version` does not pay (see main).  `deliverck DOMAIN` runs
    only `check`, and gets an app of that command alone: importing the other commands (bulk's
    worker pool, the lab, explain) cost it ~20 ms for nothing (issue 16)."""
    import typer

    from deliverck.cli import check

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, help=_HELP)

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"deliverck {__version__}")
            raise typer.Exit(0)

    @app.callback()
    def _root(
        version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                     help="Print the version and exit."),
    ) -> None:
        """deliverck TARGET runs every check; see `deliverck check --help`."""

    app.command("check")(check.check_cmd)
    if only_check:
        return app
    from deliverck.cli import audit, bulk, checks, explain, lab, listen, message, report, spf

    app.command("spf")(spf.spf_cmd)
    app.command("checks")(checks.checks_cmd)
    app.command("explain")(explain.explain_cmd)
    app.command("message")(message.message_cmd)
    app.command("listen")(listen.listen_cmd)
    lab.register(app)
    app.command("bulk")(bulk.bulk_cmd)
    app.command("audit")(audit.audit_cmd)
    report.register(app)
    return app


_APP: list[typer.Typer] = []


def _app() -> typer.Typer:
    if not _APP:
        _APP.append(_build_app())
    return _APP[0]


def __getattr__(name: str) -> Any:
    # `from deliverck.cli import app` (tests, tools that walk the commands) builds the app on demand.
    if name == "app":
        return _app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_COMMANDS_HELP = ("--help", "-h", "--version")


_CLICK: dict[bool, Any] = {}


def _click_command(only_check: bool = False):
    """The click command of the app, built once per process (typer builds it anew on each call,
    tens of milliseconds that every run would pay two or three times).  With `only_check`, the
    same root with the `check` command alone (see _check_only)."""
    if only_check not in _CLICK:
        import typer.main

        from deliverck.cli import coerce

        command = typer.main.get_command(_app() if not only_check else _build_app(only_check=True))
        coerce.install(command)
        _plain_help(command)
        _CLICK[only_check] = command
    return _CLICK[only_check]


def _check_only(args: list[str]) -> bool:
    """True when these arguments can only mean `deliverck check ...`, the common `deliverck DOMAIN`
    form: the first word is `check`, or it can be no command (it starts with a dash or has a dot,
    colon, @, bracket or slash, as a target has: see _not_a_command).  Then the other commands
    are never needed, and neither is their import; any other first word takes the full app, so
    help, suggestions for a mistyped command and the other commands behave as before."""
    if not args:
        return False
    first = args[0].split("=", 1)[0]
    if first in _COMMANDS_HELP:
        return False
    w = args[0].strip().lower()
    return args[0] == "check" or w.startswith("-") or any(c in w for c in ".:@[/")


def _plain_help(command) -> None:
    """Help through click's own formatter, not rich's: the same options, help texts, defaults and
    environment variables, without the 80 ms of importing rich and markdown-it (issue 16).  Click
    caps help at 80 columns; rich used the terminal's width, so the cap is lifted (subcommands
    inherit it from the root's context)."""
    command.context_settings.setdefault("max_content_width", 160)
    if hasattr(command, "rich_markup_mode"):
        command.rich_markup_mode = None
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


def _with_default_command(args: list[str]) -> list[str]:
    command = _click_command()
    names = set(getattr(command, "commands", {}))
    if not args or args[0].split("=", 1)[0] in _COMMANDS_HELP or args[0] in names:
        return args
    _not_a_command(args[0], names)
    return ["check", *args]


def _not_a_command(word: str, names: set[str]) -> None:
    """`deliverck help` or `deliverck expalin 5.7.1` is a mistyped command, not a target: a target
    has a dot (single labels are refused anyway), so say which command was meant."""
    import difflib

    from deliverck.errors import UsageError
    from deliverck.target import _show

    w = word.strip().lower()
    if not w or w.startswith("-") or any(c in w for c in ".:@[/"):
        return
    if w in ("help", "version"):
        raise UsageError(f"{_show(word)} is not a command: use `deliverck --{w}`")
    close = difflib.get_close_matches(w, sorted(names), n=1, cutoff=0.75)
    if close:
        raise UsageError(f"unknown command {_show(word)}: did you mean `deliverck {close[0]}`? "
                         "(a target is a domain, host or address, e.g. example.com)")


def _help_hint(ctx, args: list[str], only_check: bool = False) -> str:
    """`deliverck lab run --help` for an error in `lab run`; click raises some errors (a flag given
    a value) without a context, and then the command is read from the arguments."""
    path = getattr(ctx, "command_path", "") or ""
    if not path or path == "deliverck":
        cmd, words = _click_command(only_check), ["deliverck"]
        for a in args:
            sub = getattr(cmd, "commands", {}).get(a)
            if sub is None:
                break
            words.append(a)
            cmd = sub
        path = " ".join(words)
    return f"{path} --help"


class _ClickError(Protocol):
    def format_message(self) -> str: ...


def _usage_error(e: Exception) -> TypeGuard[_ClickError]:
    # Typer has vendored click in some releases and depends on it in others:
    # recognise click's exceptions by shape rather than by import.
    return hasattr(e, "format_message") and type(e).__name__ in (
        "UsageError", "BadParameter", "MissingParameter", "NoSuchOption", "BadOptionUsage",
        "BadArgumentUsage", "ClickException", "FileError",
    )


def _print_version() -> int:
    """`deliverck --version` and nothing else, answered before typer is imported: the same line
    typer's eager --version option prints (any other use of --version goes through typer)."""
    if sys.stdout is None:          # closed standard output: nothing to print to, as click.echo
        return 0
    try:
        sys.stdout.write(f"deliverck {__version__}\n")
        sys.stdout.flush()
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        return 1                    # as click: a reader that went away is exit 1, no traceback
    return 0


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        sys.exit(_print_version())
    from deliverck.errors import DeliverckError
    from deliverck.model import EXIT_INCOMPLETE, EXIT_USAGE

    debug = "--debug" in args
    only_check = _check_only(args)
    command = _click_command(only_check)
    run_args = (args if args[0] == "check" else ["check", *args]) if only_check else args
    try:
        if not only_check:
            run_args = _with_default_command(args)
        rc = command.main(args=run_args, prog_name="deliverck", standalone_mode=False)
    except DeliverckError as e:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"deliverck: error: {e}\n")
        rc = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("deliverck: interrupted\n")
        rc = 130
    except Exception as e:  # never a bare traceback for users
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):
            rc = e.exit_code
        elif name == "NoArgsIsHelpError" and hasattr(e, "format_message"):  # the help, as `--help` prints it; exit 2
            sys.stdout.write(e.format_message().rstrip("\n") + "\n")
            rc = EXIT_USAGE
        elif name == "Abort":
            sys.stderr.write("deliverck: interrupted\n")
            rc = 130
        elif _usage_error(e):
            hint = _help_hint(getattr(e, "ctx", None), run_args if only_check else _with_default_command(args),
                              only_check)
            msg = " ".join(e.format_message().split())
            sys.stderr.write(f"deliverck: error: {msg} (see `{hint}`)\n")
            rc = EXIT_USAGE
        else:
            if debug:
                import traceback

                traceback.print_exc()
            sys.stderr.write(
                f"deliverck: internal error: {name}: {e} (rerun with --debug and report it)\n"
            )
            rc = EXIT_INCOMPLETE
    sys.exit(rc if isinstance(rc, int) else 0)
