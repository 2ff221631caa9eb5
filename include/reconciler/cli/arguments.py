"""The ``reconcile`` command line: its arguments and their checks."""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import Any

__all__ = ["DESCRIPTION", "build_parser"]

DESCRIPTION = ("The ``reconcile`` command: validate, plan, apply, import, status, history, "
               "breaker reset, sim,\niam-policy.")


def _version() -> str:
    try:
        return importlib.metadata.version("reconciler")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reconcile", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"reconcile {_version()}")
    parser.add_argument("--config", help="targets config (default: $RECONCILER_CONFIG or the "
                        "repository's include/config/targets.yaml)")
    parser.add_argument("--store", help="state store URL (default: $RECONCILER_STORE_URL or "
                        "sqlite under $RECONCILER_HOME)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--no-color", action="store_true", help=_NO_COLOR_HELP)
    # a subcommand's --no-color must not reset the global one to False when left out
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--no-color", action="store_true", default=argparse.SUPPRESS,
                        help=_NO_COLOR_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in [("validate", "check the config and desired state"),
                        ("plan", "show drift and the plan (read-only)"),
                        ("apply", "run one full cycle"), ("status", "breaker and last cycle"),
                        ("history", "recent cycles")]:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.add_argument("--target", required=True)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("plan", "apply"):
            p.add_argument("--only-kinds", nargs="+", metavar="KIND")
        if name == "apply":
            _apply_options(p)
        if name == "history":
            p.add_argument("--limit", type=_positive, default=20,
                           help=f"at most this many cycles, 1 to {_MAX_LIMIT} (default 20)")
    _import_parser(sub, common)
    iam = sub.add_parser("iam-policy", parents=[common],
                         help="the least-privilege IAM policy an aws target needs (JSON)")
    iam.add_argument("--target", required=True)
    iam.add_argument("--read-only", action="store_true",
                     help="only the read statement (enough for plan and apply --dry-run)")
    iam.add_argument("--caller", action="store_true",
                     help="with options.accounts: what the target's own credentials need "
                          "(sts:AssumeRole on the accounts' roles), not each role")
    breaker = sub.add_parser("breaker", help="circuit breaker", parents=[common])
    breaker.add_argument("action", choices=["reset"])
    breaker.add_argument("--target", required=True)
    sim = sub.add_parser("sim", help="the simulated provider's demo fleet", parents=[common])
    sim.add_argument("action", choices=["seed", "drift"])
    sim.add_argument("--target", required=True)
    sim.add_argument("--fraction", type=_fraction, default=0.3,
                     help="share of the managed resources to drift, from 0 to 1 (default 0.3)")
    sim.add_argument("--seed", type=int, default=7)
    return parser


_NO_COLOR_HELP = "plain output (also: NO_COLOR set, or output not a terminal)"


def _apply_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true",
                   help="do not ask for confirmation on a terminal (never approves a plan "
                        "beyond policy: that takes --approve PLAN_HASH)")
    p.add_argument("--approve", metavar="PLAN_HASH",
                   help="approve the plan with this hash (from `plan` or a refused apply)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--reset-breaker", action="store_true")


def _import_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import", parents=[common],
                       help="write desired-state YAML for the live resources (adopt a fleet)")
    p.add_argument("--target", required=True)
    p.add_argument("--kind", action="append", metavar="KIND",
                   help="only this kind (repeatable; default: every kind of the target)")
    p.add_argument("--selector", action="append", metavar="KEY=VALUE", type=_selector,
                   help="only resources with this tag/label (repeatable: all must match)")
    p.add_argument("--out", metavar="PATH",
                   help="write to this new file (default: standard output)")


_MAX_LIMIT = 1_000_000  # far past any history; a bigger number overflows SQLite's integers


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of 1 or more, up to {_MAX_LIMIT}, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}")
    return value


def _selector(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value

