"""What plain `feast` from feature_repo/ needs: its variables checked first, Feast's noise off.

The profiles read hosts and paths as `${VAR}` (Feast expands them with `os.path.expandvars`,
which leaves an unset one as it is). Unset, Feast went on with the literal text: the embedded
profile created `feature_repo/${SHOPFEAST_DATA_DIR}/feast/` or died on it, the redis profile died
in SQLAlchemy (`ArgumentError: Could not parse SQLAlchemy URL`). Feast has no hook before it opens
the registry but the stores' config classes, which it validates while it reads the yaml: the
profiles' offline store (featurestore.offline) takes a `requires` line listing every variable the
file reads (`${A} ${B}`, expanded by Feast with the rest), and `variables_are_set` stops the
command when one is still unexpanded, with one line saying what to set and what shopfeast would
set it to from the variables `make` uses (the data directory rule, REDIS_URL, POSTGRES_DSN:
`profile_env`).

Importing this module also installs shopfeast's filters of Feast's false warnings
(featurestore/quiet.py: FileSource globs, on-demand views "experimental", ibis's
DeprecationWarnings), so a plain `feast plan` or `feast materialize` is as quiet as `shopfeast`.
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Any

import click

from featurestore import quiet
from featurestore.errors import StoreConfigError
from shopconfig.settings import (
    DATA_DIR_ENV,
    SOURCE_FORMAT_ENV,
    SPARK_MASTER_ENV,
    profile_env,
    resolve_data_dir,
)

quiet.install()  # Feast's false warnings, off for a plain `feast` run too

_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_SECRET = re.compile(r"(?<=password=)[^,]+|(?<=://)([^/@:]*):[^/@]*(?=@)")
_DERIVED_FROM = {
    DATA_DIR_ENV: "the project's data directory, or yours",
    "REDIS_CONNECTION_STRING": "from REDIS_URL",
    "SHOPFEAST_REGISTRY_URL": "from POSTGRES_DSN",
    SPARK_MASTER_ENV: "local[2], or your cluster's master URL",
    SOURCE_FORMAT_ENV: "spark: the definitions build Spark sources",
}


class MissingVariables(StoreConfigError):
    """A profile reads variables that are not set (the message says which, and a value)."""


def missing_message(
    names: list[str], profile: str, python: bool = False, kind: str = "redis"
) -> str:
    """One line: what to set, with the values shopfeast derives for a `kind` profile (redis or
    spark; a password as `...`)."""
    derived = profile_env(kind, resolve_data_dir())
    values = {
        name: _SECRET.sub(
            lambda m: "..." if m[1] is None else f"{m[1]}:...", derived.get(name, "...")
        )
        for name in names
    }
    hints = "; ".join(f"{n}: {_DERIVED_FROM[n]}" for n in names if n in _DERIVED_FROM)
    if python:
        todo = ", ".join(f"os.environ[{n!r}] = {v!r}" for n, v in values.items())
        todo += " first, or open it with featurestore.store.open_store()"
    else:
        todo = "export " + " ".join(f"{n}={shlex.quote(v)}" for n, v in values.items())
    return f"{profile} reads {', '.join(names)}, not set: {todo}" + (f" ({hints})" if hints else "")


def _stop(names: list[str], kind: str = "redis") -> None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:  # from Python (a notebook): an exception, never an exit
        raise MissingVariables(missing_message(names, "the Feast profile", True, kind))
    _raise(missing_message(names, _yaml_file(ctx), kind=kind))


def _yaml_file(ctx: click.Context) -> str:
    return str((ctx.find_root().obj or {}).get("FS_YAML_FILE") or "the Feast profile")


def _raise(message: str) -> None:
    error = click.ClickException(message)
    error.exit_code = 2  # inside Feast's CLI: one line, `Error: ...`
    raise error


def stop_wrong_value(name: str, wanted: str, reader: str) -> None:
    """A variable set to what this profile cannot use: one line saying the value it needs."""
    ctx = click.get_current_context(silent=True)
    profile = "the Feast profile" if ctx is None else _yaml_file(ctx)
    now = os.environ.get(name)
    message = (
        f"{profile}: {reader} needs {name}={wanted}, not "
        f"{'unset' if now is None else repr(now)}: export {name}={wanted}"
    )
    if ctx is None:
        raise MissingVariables(message)
    _raise(message)


def variables_are_set(data: Any, profile: str = "redis") -> Any:
    """The offline store config's `before` validator: pop `requires` (the profile's `${VAR}`s,
    expanded by Feast with the rest of the file) and stop if one is still unexpanded, saying what
    shopfeast would set for a `profile` (redis, spark) profile."""
    if isinstance(data, dict) and "requires" in data:
        data = dict(data)
        found = _REFERENCE.findall(str(data.pop("requires") or ""))
        if unset := list(dict.fromkeys(a or b for a, b in found)):
            _stop(unset, profile)
    return data
