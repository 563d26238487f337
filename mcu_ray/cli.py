"""``mcu-ray``: mcu_ray's commands under one name, beside ``python -m mcu_ray.<command>``.

    mcu-ray sweep sweeps/quickstart.yaml --dry-run     # = python -m mcu_ray.sweep ...
    mcu-ray search sweeps/search_digits.yaml           # = python -m mcu_ray.search ...
    mcu-ray report mcu_runs/quickstart                 # = python -m mcu_ray.report ...
    mcu-ray export mcu_runs ep-... exported/npo        # = python -m mcu_ray.export ...

Each subcommand hands the rest of the line to that module's ``main``; ``mcu-ray
<command> --help`` shows its options. (``python -m mcu_ray`` works too, uninstalled.)
"""
from __future__ import annotations

import importlib
import sys

from mcu_ray.errors import did_you_mean

# subcommand -> (module with main(argv), what it does)
COMMANDS = {
    "sweep": ("mcu_ray.sweep", "plan a sweep file, run or resume it on Ray, draw its report"),
    "search": ("mcu_ray.search", "run only the hyper-parameter search of a sweep file (its search: section)"),
    "report": ("mcu_ray.report.__main__", "draw the report of a stored sweep (<storage>/<sweep>)"),
    "export": ("mcu_ray.export", "write a stored model or curve point as a Hugging Face folder"),
}


def usage() -> str:
    lines = ["usage: mcu-ray COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "mcu-ray COMMAND --help shows the options of one command."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}{did_you_mean(command, COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if command in ("sweep", "export"):
        return module.main(rest, prog=f"mcu-ray {command}")
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
