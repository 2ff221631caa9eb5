"""The ``reconcile`` CLI at a terminal (a pty) and in pipes: confirmation, colour, JSON."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from reconciler.providers.simulated import SimulatedProvider
from tests.integration import test_cli
from tests.integration.test_cli import DESIRED, reconcile

env = test_cli.env  # the fixture: a target "lab" on the simulated provider

ESC = "\x1b["


def on_terminal(env: dict[str, str], *args: str, answer: str | None = None,
                timeout: float = 120) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pty; type ``answer`` at the prompt."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", *args], env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
            if answer is not None and not typed and b"[y/N]" in out:
                os.write(master, answer.encode() + b"\n")
                typed = True
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, out.decode(errors="replace").replace("\r\n", "\n")


def _nodes(tmp_path: Path) -> list[str]:
    sim = SimulatedProvider(tmp_path / "sim.db")
    return sorted(r.key.name for r in sim.resources("sim.Node"))


def _lose_two_nodes(env: dict[str, str], tmp_path: Path) -> None:
    assert reconcile(env, "sim", "seed", "--target", "lab").returncode == 0
    sim = SimulatedProvider(tmp_path / "sim.db")
    for name in ("node-1", "node-2"):
        sim.delete("sim.Node", name)


def _colourful(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}


def test_at_a_terminal_apply_shows_the_plan_asks_and_a_no_changes_nothing(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    code, out = on_terminal(_colourful(env), "apply", "--target", "lab", answer="n")
    assert code == 1, out
    assert "+ sim.Node/node-1" in out and "apply these 2 changes? [y/N]" in out
    assert "apply cancelled: nothing was changed" in out
    assert "Outcome:" not in out  # no cycle ran
    assert _nodes(tmp_path) == []


def test_at_a_terminal_yes_applies_the_plan_shown_in_colour(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    code, out = on_terminal(_colourful(env), "apply", "--target", "lab", answer="yes")
    assert code == 0, out
    assert "apply these 2 changes? [y/N]" in out and "Outcome: converged" in out
    assert f"{ESC}32m" in out  # the "+" lines are green
    assert _nodes(tmp_path) == ["node-1", "node-2"]


def test_anything_but_y_or_yes_aborts(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    code, out = on_terminal(env, "apply", "--target", "lab", answer="sure")
    assert code == 1 and "apply cancelled" in out, out
    assert _nodes(tmp_path) == []


def test_yes_skips_the_question_and_no_color_keeps_a_terminal_plain(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    code, out = on_terminal({**_colourful(env), "NO_COLOR": "1"}, "apply", "--target", "lab",
                            "--yes")
    assert code == 0, out
    assert "[y/N]" not in out and "Outcome: converged" in out and ESC not in out
    reconcile(env, "sim", "drift", "--target", "lab", "--fraction", "1.0")
    code, out = on_terminal(_colourful(env), "--no-color", "plan", "--target", "lab")
    assert code == 2 and "Plan " in out and ESC not in out, out
    code, out = on_terminal(_colourful(env), "plan", "--target", "lab", "--no-color")
    assert code == 2 and ESC not in out, out
    code, out = on_terminal(_colourful(env), "plan", "--target", "lab")
    assert code == 2 and ESC in out, out  # the same plan, coloured: the switches did it


def test_at_a_terminal_a_plan_past_policy_is_not_asked_about_it_needs_its_hash(env, tmp_path):
    assert reconcile(env, "sim", "seed", "--target", "lab").returncode == 0
    (tmp_path / "desired" / "fleet.yaml").write_text(DESIRED.replace(
        "  - kind: sim.Node\n    name: node-2\n"
        "    spec: {pool: default, instance_type: m5.large}\n", ""))
    code, out = on_terminal(env, "apply", "--target", "lab", answer="y")
    assert code == 3, out
    assert "[y/N]" not in out and "needs approval: re-run with --approve" in out
    assert _nodes(tmp_path) == ["node-1", "node-2"]


def test_piped_output_has_no_colour_codes(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    out = subprocess.run([sys.executable, "-m", "reconciler", "plan", "--target", "lab"],
                         env=_colourful(env), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "+ sim.Node/node-1" in out.stdout
    assert ESC not in out.stdout + out.stderr


def test_off_a_terminal_apply_without_yes_acts_as_before(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    out = subprocess.run([sys.executable, "-m", "reconciler", "apply", "--target", "lab"],
                         env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "[y/N]" not in out.stdout, out.stdout + out.stderr
    assert _nodes(tmp_path) == ["node-1", "node-2"]


def test_every_json_document_carries_format_version_1(env, tmp_path):
    _lose_two_nodes(env, tmp_path)
    docs = []
    for args in (["validate"], ["plan"], ["apply", "--yes"], ["apply", "--dry-run"],
                 ["status"], ["history"]):
        out = reconcile(env, *args, "--target", "lab", "--json")
        assert out.returncode in (0, 2), (args, out.stderr)
        lines = out.stdout.splitlines()
        assert lines, args
        docs += [(args, json.loads(line)) for line in lines]
    assert [a for a, d in docs if d.get("format_version") != 1] == []
    events = [d for a, d in docs if a == ["apply", "--yes"]][:-1]
    assert events and all("type" in e for e in events)  # the event lines are versioned too
    history = docs[-1][1]
    assert history["target"] == "lab" and history["cycles"][0]["status"] == "converged"
