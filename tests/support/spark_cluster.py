"""A Spark standalone cluster on loopback for one test: a master and workers, each its own JVM,
started from the launcher bundled with pyspark (`bin/spark-class`; the pip package ships no
start-master.sh) and stopped by their process ids.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from pipelines.spark.session import prepare_env

HOST = "127.0.0.1"
# Quick JVMs for small test jobs: the C1 compiler only (no C2 warm-up on 2 busy cores).
SPARK_TEST_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
SPARK_TEST_CONF = {
    "spark.driver.extraJavaOptions": SPARK_TEST_JAVA_OPTIONS,
    "spark.executor.extraJavaOptions": SPARK_TEST_JAVA_OPTIONS,
    "spark.executor.memory": "512m",
    "spark.default.parallelism": "2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, root: Path, workers: int = 2, cores: int = 1, memory: str = "1g"):
        self.root, self.workers, self.cores, self.memory = root, workers, cores, memory
        self.port, self.ui = free_port(), free_port()
        self.worker_ui = [free_port() for _ in range(workers)]
        self.procs: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"spark://{HOST}:{self.port}"

    def state(self) -> dict:
        """The master's JSON (workers, active and completed applications)."""
        with urllib.request.urlopen(f"http://{HOST}:{self.ui}/json", timeout=5) as r:
            return json.load(r)

    def executors(self, app_id: str) -> dict[int, list[str]]:
        """Executor ids each worker ran (or runs) for `app_id`, from the workers' JSON."""
        out = {}
        for i, port in enumerate(self.worker_ui):
            with urllib.request.urlopen(f"http://{HOST}:{port}/json", timeout=5) as r:
                body = json.load(r)
            ran = body.get("executors", []) + body.get("finishedexecutors", [])
            out[i] = [str(e["id"]) for e in ran if e.get("appid") == app_id]
        return out

    def start(self, timeout: float = 180.0) -> None:
        prepare_env()
        import pyspark

        home = Path(pyspark.__file__).parent
        env = dict(
            os.environ,
            SPARK_HOME=str(home),
            SPARK_LOCAL_IP=HOST,
            SPARK_LOG_DIR=str(self.root / "logs"),
            PYSPARK_PYTHON=sys.executable,
            # small, quick JVMs for the daemons: they only schedule
            SPARK_DAEMON_MEMORY="256m",
            SPARK_DAEMON_JAVA_OPTS=SPARK_TEST_JAVA_OPTIONS,
        )
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        cls = str(home / "bin" / "spark-class")
        commands = [
            [
                cls,
                "org.apache.spark.deploy.master.Master",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--webui-port",
                str(self.ui),
            ],
        ]
        for i in range(self.workers):
            commands.append(
                [
                    cls,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    HOST,
                    "--cores",
                    str(self.cores),
                    "--memory",
                    self.memory,
                    "--webui-port",
                    str(self.worker_ui[i]),
                    "--work-dir",
                    str(self.root / f"work{i}"),
                    self.url,
                ]
            )
        names = ["master"] + [f"worker{i}" for i in range(self.workers)]
        for name, cmd in zip(names, commands, strict=True):
            log = open(self.root / "logs" / f"{name}.log", "wb")  # noqa: SIM115
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                alive = [w for w in self.state()["workers"] if w["state"] == "ALIVE"]
                if len(alive) == self.workers:
                    return
            except OSError:
                pass
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.5)
        self.stop()
        logs = "\n".join((self.root / "logs" / f"{n}.log").read_text()[-2000:] for n in names)
        raise RuntimeError(f"the Spark standalone cluster did not come up:\n{logs}")

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


@contextmanager
def standalone(root: Path, workers: int = 2):
    cluster = Cluster(root, workers)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
