"""The local stack (deploy/local/stack.sh) and the hub's role processes, managed by pid files.

Each role runs as its own process (``hub run ROLE``), detached, logging to ``<state>/logs/ROLE.log``.
Only processes whose pid file we wrote, and whose command line is really ours, are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.settings import REPO_ROOT, Settings

STACK_SCRIPT = REPO_ROOT / "deploy" / "local" / "stack.sh"
ROLES = ("mllp", "translator", "identity", "record", "fanout", "warehouse", "api", "receiver")


def stack_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["HSSK_STATE_DIR"] = str(settings.state_dir)
    env.setdefault("HSSK_KAFKA_PORT", settings.kafka_bootstrap.rsplit(":", 1)[1])
    env.setdefault("HSSK_REDIS_PORT", str(settings.redis_port))
    # stack.sh rewrites server.properties at every start: without this a restarted test or bench broker
    # would take the demo's controller port.
    env.setdefault("HSSK_KAFKA_CONTROLLER_PORT", str(settings.kafka_controller_port))
    return env


def stack(command: str, settings: Settings, *args: str) -> int:
    """Run ``stack.sh COMMAND`` (start, stop, status, stop-kafka, ...); its output goes to ours."""
    return subprocess.call(["bash", str(STACK_SCRIPT), command, *args], env=stack_env(settings))


def _pid_file(settings: Settings, role: str) -> Path:
    return settings.state_dir / "roles" / f"{role}.pid"


def log_file(settings: Settings, role: str) -> Path:
    return settings.state_dir / "logs" / f"{role}.log"


def role_pid(settings: Settings, role: str) -> int | None:
    """The pid of a running role we started, or None (stale pid files are removed)."""
    path = _pid_file(settings, role)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return None
    if b"run" in cmdline and role.encode() in cmdline:
        return pid
    path.unlink(missing_ok=True)
    return None


def start_role(settings: Settings, role: str) -> int:
    """Start a role in the background (no-op if it runs); return its pid."""
    pid = role_pid(settings, role)
    if pid is not None:
        return pid
    for folder in ("roles", "logs"):
        (settings.state_dir / folder).mkdir(parents=True, exist_ok=True)
    with open(log_file(settings, role), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "run", role],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=stack_env(settings), cwd=REPO_ROOT, start_new_session=True,
        )
    _pid_file(settings, role).write_text(str(proc.pid))
    return proc.pid


def stop_role(settings: Settings, role: str, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> bool:
    """Stop a role we started: SIGTERM (or ``sig``), then SIGKILL after the timeout. False if it was not running."""
    pid = role_pid(settings, role)
    if pid is None:
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)
    _pid_file(settings, role).unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"
