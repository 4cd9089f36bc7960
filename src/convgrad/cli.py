"""The ``convgrad`` command: argparse subcommands living in their own modules.

Each subcommand is ``module:function`` taking ``argv: list[str]`` (everything after the
command's name) and returning an exit code; modules are imported only when their command
runs, so ``convgrad --help`` stays fast. With no arguments, ``convgrad`` explains the
origin layer and then runs it (``explain``, then ``demo``); options without a command go
to ``explain``. A command that needs a missing optional extra stops with one line on
stderr and status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "explain": (
        "convgrad.tools.explain_cli:main",
        "explain a layer: shapes, each gradient as a "
        "convolution, costs, a figure (default: the origin layer)",
    ),
    "check": (
        "convgrad.tools.check_cli:main",
        "grade your own conv2d backward: convgrad check module:function [--skip dilation,groups]",
    ),
    "demo": (
        "convgrad.tools.demo:main",
        "run the origin layer (X 5x100x100, 10 filters 5x5x5) forward "
        "and backward and compare with the slow reference",
    ),
    "train-digits": (
        "convgrad.examples.digits:main",
        "train a 2-conv CNN built from convgrad layers on scikit-learn's 8x8 digits "
        "(progress bar, loss/accuracy plot)",
    ),
    "train-digits-dask": (
        "convgrad.examples.digits_dask:main",
        "the digits CNN trained data-parallel over a 2-process Dask LocalCluster, "
        "checked against single-process training",
    ),
}
DEFAULT_COMMAND = "explain"
# with no arguments at all: explain the origin layer, then run it against the reference
NO_ARGUMENT_COMMANDS = ("explain", "demo")
_OWN_OPTIONS = ("-h", "--help", "--version")


def version() -> str:
    """The installed distribution's version (``importlib.metadata``), or the package's
    own ``__version__`` when convgrad runs from a source tree that is not installed."""
    try:
        from importlib.metadata import version as installed_version

        return installed_version("convgrad")
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or unreadable metadata
        from . import __version__

        return __version__


class _Version(argparse.Action):
    """``--version``: looks the version up only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"convgrad {version()}")
        parser.exit()


class _Formatter(argparse.HelpFormatter):
    """argparse's help, without the lone 'COMMAND' line above the list of commands."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=28)

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            text = text.partition("\n")[2]
        return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convgrad",
        formatter_class=_Formatter,
        description="Convolution layers forward and backward: every gradient, exactly. "
        "No arguments: convgrad explain (the origin layer), then convgrad demo; options "
        f"without a command go to convgrad {DEFAULT_COMMAND}.",
        epilog="convgrad COMMAND --help shows a command's options.",
    )
    parser.add_argument("--version", action=_Version, help="print convgrad's version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, help_) in COMMANDS.items():
        # the command's own module parses its options (and its --help)
        commands.add_parser(name, help=help_, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        codes = []
        for i, name in enumerate(NO_ARGUMENT_COMMANDS):
            if i:  # a heading between the commands' outputs
                print(f"\n== convgrad {name} ==", flush=True)
            codes.append(_run(name, []))
        return max(codes)
    parser = _parser()
    if argv[0].startswith("-") and argv[0] not in _OWN_OPTIONS:
        argv = [DEFAULT_COMMAND, *argv]
    elif argv[0] not in COMMANDS and argv[0] not in _OWN_OPTIONS:
        choices = ", ".join(COMMANDS)
        print(
            f"{parser.format_usage()}convgrad: error: unknown command {argv[0]!r} "
            f"(choose from {choices})",
            file=sys.stderr,
        )
        return 2
    try:
        namespace, rest = parser.parse_known_args(argv)
    except SystemExit as exc:  # convgrad's own --help or --version (already printed)
        return exc.code if isinstance(exc.code, int) else 0
    return _run(namespace.command, rest)


def _run(command: str, argv: list[str]) -> int:
    from ._extras import run_command

    module_name, function_name = COMMANDS[command][0].split(":")

    def function(args: list[str]):
        return getattr(importlib.import_module(module_name), function_name)(args)

    # a command's own argparse exits (SystemExit) for its --help and usage errors, as a
    # command run on its own does
    return run_command(function, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
