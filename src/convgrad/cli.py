"""The ``convgrad`` command: a thin dispatcher to subcommands living in their own modules.

Each subcommand is ``module:function`` taking ``argv: list[str]`` and returning an exit
code; modules are imported only when their command runs, so ``convgrad --help`` stays fast.
A command that needs a missing optional extra stops with one line on stderr and status 2.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "explain": (
        "convgrad.explain:cli_main",
        "explain a layer: shapes, each gradient as a "
        "convolution, costs, a figure (default: the origin layer)",
    ),
    "check": (
        "convgrad.check:cli_main",
        "grade your own conv2d backward: convgrad check module:function [--skip dilation,groups]",
    ),
    "demo": (
        "convgrad._demo:main",
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


def _usage() -> str:
    lines = [
        "usage: convgrad [COMMAND] [OPTIONS]",
        "  no arguments: convgrad explain (the origin layer), then convgrad demo;",
        f"  options without a command go to convgrad {DEFAULT_COMMAND}",
        "",
        "commands:",
    ]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "convgrad COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv and argv[0] in COMMANDS:
        command, rest = argv[0], argv[1:]
    elif argv and not argv[0].startswith("-"):
        print(f"convgrad: unknown command {argv[0]!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    else:
        command, rest = DEFAULT_COMMAND, argv
    if not argv:
        codes = []
        for i, name in enumerate(NO_ARGUMENT_COMMANDS):
            if i:  # a heading between the commands' outputs
                print(f"\n== convgrad {name} ==", flush=True)
            codes.append(_run(name, []))
        return max(codes)
    return _run(command, rest)


def _run(command: str, argv: list[str]) -> int:
    from ._extras import run_command

    module_name, function_name = COMMANDS[command][0].split(":")

    def function(args: list[str]):
        return getattr(importlib.import_module(module_name), function_name)(args)

    return run_command(function, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
