"""The ``reconcile`` command: validate, plan, apply, import, status, history, breaker reset, sim,
iam-policy."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from reconciler.cli.arguments import build_parser
from reconciler.cli.commands import (
    cmd_breaker,
    cmd_history,
    cmd_iam_policy,
    cmd_import,
    cmd_sim,
    cmd_status,
    cmd_validate,
)
from reconciler.cli.console import EXIT_APPROVAL, EXIT_BUSY, EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconciler.cli.cycle_commands import cmd_apply, cmd_plan, incomplete_kinds, plan_result
from reconciler.core.errors import InvalidConfig, InvalidDesiredState
from reconciler.orchestration.runtime import Target, load_target

__all__ = [
    "COMMANDS",
    "EXIT_APPROVAL",
    "EXIT_BUSY",
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_OK",
    "build_parser",
    "incomplete_kinds",
    "main",
    "plan_result",
]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        target = load_target(args.target, args.config, args.store)
        return COMMANDS[args.command](target, args)
    except (InvalidConfig, InvalidDesiredState) as exc:
        what = "configuration" if isinstance(exc, InvalidConfig) else "desired state"
        print(f"error: invalid {what}:", file=sys.stderr)
        for loc, message in exc.problems:
            print(f"  {loc}: {message}", file=sys.stderr)
        return EXIT_ERROR



COMMANDS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "validate": cmd_validate, "plan": cmd_plan, "apply": cmd_apply, "status": cmd_status,
    "history": cmd_history, "breaker": cmd_breaker, "sim": cmd_sim, "import": cmd_import,
    "iam-policy": cmd_iam_policy,
}
