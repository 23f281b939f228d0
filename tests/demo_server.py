"""Start the demo app as a user does (python app.py --port N) on 127.0.0.1, offline, for the demo tests."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lab import paths

APP = paths.ROOT / "demo" / "app.py"
SHIPPED = paths.ROOT / "demo" / "checkpoints"
OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, *args: str, app: Path = APP, cwd: Path | None = None,
              timeout: float = 180) -> tuple[subprocess.Popen, str]:
    """Run app with args on a free port; wait until it answers; returns the process and its URL."""
    port = free_port()
    env = os.environ | OFFLINE | {"PYTHONUNBUFFERED": "1"}
    out = open(log, "w")
    proc = subprocess.Popen([sys.executable, str(app), "--host", "127.0.0.1", "--port", str(port), *args],
                            cwd=cwd or app.parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"the app did not answer on {url} within {timeout} s:\n{log.read_text()}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
