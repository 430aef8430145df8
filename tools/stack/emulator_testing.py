"""What the emulator's tests share: the emulator loaded as a module, and one started as a
subprocess on a free port (tools/stack/test_emulator_*.py)."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import botocore.config

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
# total_max_attempts=1: exactly one attempt. (botocore's ``max_attempts`` counts RETRIES,
# so {"max_attempts": 1} would still retry once, e.g. a 500 or a throttle.)
NO_RETRIES = botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"})


def load_emulator_module(name: str = "purse_stack_emulator") -> Any:
    """emulator.py as a module, whatever the test runner's sys.path."""
    spec = importlib.util.spec_from_file_location(name, EMULATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_emulator(extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """An emulator on a free port, without the caller's PURSE_EMULATOR_FAULTS."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PURSE_EMULATOR_FAULTS"}
    env.update({"PYTHONUNBUFFERED": "1", **(extra_env or {})})
    proc = subprocess.Popen([sys.executable, EMULATOR, "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {proc.returncode}: {proc.stdout.read()}")  # type: ignore[union-attr]
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("emulator did not answer in time")


def stop_emulator(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out or ""
