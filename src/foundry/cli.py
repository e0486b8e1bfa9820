"""The `foundry` command. Each sub-command lives in `foundry.commands.<name>` and defines
`HELP`, `register(parser)` and `main(args)`; this file only dispatches."""
from __future__ import annotations

import argparse
import importlib
import sys

from .runtime import retain_freed_memory
from .validation import FoundryInputError
from .version import __version__

# Order shown in `foundry --help`.
COMMANDS = ["demo", "info", "check-data", "pretrain", "distill", "align", "eval", "compare", "bench", "export", "models"]


def _module_name(cmd: str) -> str:
    return "foundry.commands." + cmd.replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foundry", description="Distil 3D point-cloud foundation models for the edge.")
    parser.add_argument("--version", action="version", version=f"foundry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        mod = importlib.import_module(_module_name(cmd))  # each command's own imports wait for its main()
        p = sub.add_parser(cmd, help=mod.HELP, description=mod.HELP)
        mod.register(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 1
    retain_freed_memory()  # batch-1 calls stop paying page faults (foundry.runtime; FOUNDRY_MALLOC=default: off)
    try:
        return int(args._main(args) or 0)
    except FoundryInputError as exc:
        print(f"foundry {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nfoundry {args.command}: interrupted; progress saved so far is kept (re-run with --resume where offered)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
