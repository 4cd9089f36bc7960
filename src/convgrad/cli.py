"""The ``convgrad`` command: a thin dispatcher to subcommands living in their own modules.

Each subcommand is ``module:function`` taking ``argv: list[str]`` and returning an exit
code; modules are imported only when their command runs, so ``convgrad --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("convgrad._demo:main", "run the origin layer (X 5x100x100, 10 filters 5x5x5) forward "
             "and backward and compare with the slow reference"),
}
DEFAULT_COMMAND = "demo"


def _usage() -> str:
    lines = ["usage: convgrad [COMMAND] [OPTIONS]   (no command: convgrad " + DEFAULT_COMMAND + ")", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
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
    target, _ = COMMANDS[command]
    module_name, function_name = target.split(":")
    return int(getattr(importlib.import_module(module_name), function_name)(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
