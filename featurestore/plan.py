"""`feast plan` that CI can trust: Feast's own diff, less the one difference that is not a change.

Once a view has been materialized its stored copy carries materialization intervals and the repo's
does not, so Feast (0.67) compares the two field by field; the only field that then differs is the
view's embedded batch source, by its `meta`: the created and updated times that `feast apply`
stamps on every DataSource object (feast-dev/feast#5573, a "permadiff"). Plain `feast plan`
reports every materialized view as "Updated" with about 70 lines of protobuf each.

`plan()` takes Feast's `FeatureStore.plan` diff and drops each property difference that vanishes
once the `meta` of every DataSource inside both values is cleared; objects left with no
difference are unchanged. Everything else (a new feature, a tag, a path, a deleted view, an
infrastructure change) is a change. `python -m featurestore.plan [-f YAML] [--check]`, run from
feature_repo/ (what `shopfeast plan` does), prints Feast's report of what is left; with `--check`
it exits 1 when anything is left and 0 when nothing is.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import re
import sys
from pathlib import Path

from feast.diff.infra_diff import InfraDiff, InfraObjectDiff
from feast.diff.property_diff import PropertyDiff, TransitionType
from feast.diff.registry_diff import RegistryDiff
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from google.protobuf.message import Message

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clear_source_meta(msg: Message) -> None:
    if isinstance(msg, DataSourceProto):
        msg.ClearField("meta")
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            for item in value.values():
                if isinstance(item, Message):
                    _clear_source_meta(item)
        elif field.is_repeated:
            for item in value:
                _clear_source_meta(item)
        else:
            _clear_source_meta(value)


def _without_source_meta(value):
    if not isinstance(value, Message):
        return value
    copy = type(value)()
    copy.CopyFrom(value)
    _clear_source_meta(copy)
    return copy


def is_real(diff: PropertyDiff) -> bool:
    """False when the two values differ only in DataSource `meta` timestamps."""
    return _without_source_meta(diff.val_existing) != _without_source_meta(diff.val_declared)


def real_changes(registry_diff: RegistryDiff) -> RegistryDiff:
    """Feast's registry diff without unchanged objects and meta-only updates."""
    out = RegistryDiff()
    for d in registry_diff.feast_object_diffs:
        if d.transition_type == TransitionType.UNCHANGED:
            continue
        if d.transition_type == TransitionType.UPDATE:
            props = [p for p in d.feast_object_property_diffs if is_real(p)]
            if not props:
                continue
            d = dataclasses.replace(d, feast_object_property_diffs=props)
        out.add_feast_object_diff(d)
    return out


def infra_changes(infra_diff: InfraDiff) -> list[InfraObjectDiff]:
    return [
        d for d in infra_diff.infra_object_diffs if d.transition_type != TransitionType.UNCHANGED
    ]


def plan(repo_path: Path, fs_yaml: Path) -> tuple[RegistryDiff, InfraDiff]:
    """What `feast apply` would change (Feast's `feast plan`, the same objects and steps)."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import _get_repo_contents, _get_store_and_registry

    config = load_repo_config(repo_path, fs_yaml)
    os.chdir(repo_path)
    with contextlib.redirect_stdout(io.StringIO()):  # "No project found in the repository..."
        repo = _get_repo_contents(repo_path, config.project, config)
    store, _ = _get_store_and_registry(config)
    registry_diff, infra_diff, _ = store.plan(repo)
    return real_changes(registry_diff), infra_diff


def main(argv: list[str] | None = None) -> int:
    from featurestore import quiet

    quiet.install()
    p = argparse.ArgumentParser(prog="python -m featurestore.plan", description=__doc__)
    p.add_argument("-f", "--feature-store-yaml", type=Path, default=Path("feature_store.yaml"))
    p.add_argument("--check", action="store_true", help="exit 1 when anything would change")
    args = p.parse_args(argv)
    repo = Path.cwd()
    try:
        registry_diff, infra_diff = plan(repo, (repo / args.feature_store_yaml).resolve())
    except Exception as exc:  # the definitions or the registry: one line, exit 2
        print(f"plan: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    report = f"{registry_diff.to_string()}\n{infra_diff.to_string()}"
    print(report if sys.stdout.isatty() else _ANSI.sub("", report))
    changed = bool(registry_diff.feast_object_diffs or infra_changes(infra_diff))
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
