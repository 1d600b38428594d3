"""Feast's servers started as a user starts them (`shopfeast ui`, `shopfeast registry`: their own
process) and read over HTTP; what feature_repo/ declares, to compare with what they list."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shopconfig.settings import FEATURE_REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> tuple[int, dict, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers), json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.load(e)


def serve(args: list[str], data: Path, ready_path: str, repo_root: Path) -> Iterator[str]:
    """`shopfeast <args> --data-dir DATA --port P` (this process's environment); yields its
    base URL once `ready_path` answers, and stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "shopfeast.cli", *args, "--data-dir", str(data)]
    # its own process group: `shopfeast ui` runs `feast ui` as a child, which a signal to the
    # parent alone leaves running (holding the output pipe: a read of it never ended)
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                get_json(f"{base}{ready_path}")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    _stop_group(proc, signal.SIGKILL)
                    pytest.fail(f"shopfeast {' '.join(args)} did not start:\n{proc.stdout.read()}")
                time.sleep(0.5)
        yield base
    finally:
        _stop_alone(proc, args)


def _stop_alone(proc: subprocess.Popen, args: list[str]) -> None:
    """SIGTERM to the server's process alone, as a service manager or a shell's kill sends it:
    it must stop and leave nothing of its process group running (`shopfeast ui` once left its
    `feast ui` child serving). The group is killed either way, so a failure leaves no server."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        _stop_group(proc, signal.SIGKILL)
        pytest.fail(f"shopfeast {' '.join(args)} did not stop within 30 s of SIGTERM")
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(proc.pid):
        _stop_group(proc, signal.SIGKILL)
        pytest.fail(f"shopfeast {' '.join(args)} left processes running after SIGTERM")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the server's whole process group and wait for the server (SIGKILL after 20 s)."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    except ProcessLookupError:  # the group is gone already
        proc.wait(timeout=20)


def declared_services() -> set[str]:
    """The FeatureService names feature_repo/feature_services.py declares, as written."""
    tree = ast.parse((FEATURE_REPO / "feature_services.py").read_text())
    return {
        k.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "FeatureService"
        for k in node.keywords
        if k.arg == "name"
    }


def assert_ui_lists_the_repo(base: str) -> None:
    """Feast's UI at `base`: the page, the project, and the services it lists with descriptions
    (served to the page by the UI's own /api/v1) are the repo's."""
    with urllib.request.urlopen(f"{base}/", timeout=10) as r:
        assert r.status == 200 and "<title>Feast" in r.read().decode()
    _, _, projects = get_json(f"{base}/projects-list.json")
    assert [p["id"] for p in projects["projects"]] == ["shopfeast"]
    status, _, body = get_json(f"{base}/api/v1/feature_services?project=shopfeast")
    assert status == 200, body
    listed = {s["spec"]["name"]: s["spec"] for s in body["featureServices"]}
    declared = declared_services()
    assert len(declared) >= 7 and set(listed) == declared
    assert all(spec.get("description") for spec in listed.values())
