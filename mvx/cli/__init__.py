"""The `mvx` command. Each subcommand lives in its own module exposing `register(subparsers)`;
a subcommand's handler returns an exit status. MvxError becomes a one-line message and exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from mvx import MvxError, __version__

# module name -> subcommand(s) it registers; imported lazily so `mvx --help` stays fast.
SUBCOMMAND_MODULES = [
    "mvx.cli.syscalls",
    "mvx.cli.keygen",
    "mvx.cli.trace",
    "mvx.cli.run",
    "mvx.cli.record",
    "mvx.cli.bench",
    "mvx.cli.doctor",
]


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (and a pointer to --help), like every other mvx error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """`mvx --version`: the C part is loaded (or built) only when asked."""

    def __call__(self, parser, namespace, values, option_string=None):
        from mvx.mechanics.native import build_info

        print(f"mvx {__version__} ({build_info()})")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mvx",
        description="mvx runs one program as variants of different ISAs (x86_64, i386, aarch64) kept in "
        "step on system calls, so that a difference between them shows an exploit. `run` runs a leader "
        "and followers on one machine; `leader` and `follower` are the two-node form (TLS keys from "
        "`keygen`); `record` writes a leader's stream to a file and `verify` checks a build of any ISA against it, offline; `trace` traces one variant; `syscalls` shows the per-ISA tables; `doctor` checks what mvx "
        "needs of this machine. aarch64 variants "
        "are traced only on an aarch64 kernel.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="the version, and which build of the C part runs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except MvxError as exc:
        print(f"mvx: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mvx: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
