"""What every ``reconcile`` command shares: exit codes, output, the acting user."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Mapping
from typing import Any

from reconciler.output.render import versioned, wants_color, write_text

__all__ = ["EXIT_APPROVAL", "EXIT_BUSY", "EXIT_CHANGES", "EXIT_ERROR", "EXIT_OK", "actor", "out"]

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_APPROVAL, EXIT_BUSY = 0, 1, 2, 3, 4


def actor() -> str:
    return f"cli:{getpass.getuser()}"



def out(args: argparse.Namespace, data: Mapping[str, Any], text: str) -> None:
    """``data`` as one JSON document (``--json``, with ``format_version``), else ``text``,
    coloured on a terminal unless ``--no-color`` or ``NO_COLOR`` says not to."""
    if getattr(args, "json", False):
        print(json.dumps(versioned(data), default=str), flush=True)
        return
    write_text(text, sys.stdout, wants_color(sys.stdout, getattr(args, "no_color", False)))

