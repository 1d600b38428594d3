"""All feature sources, collected from their family modules (each declares its SOURCE once).

Feast definitions (feature_repo/) and the pipeline runner both start here. The family modules are
listed by name so a family still being written does not break the others: `families()` skips a
module that does not exist yet, and tests/pipelines/test_pipelines_specs.py fails until all are
present.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from pipelines import declarations, realtime
from pipelines.aggregate import DeclaredFamily
from pipelines.specs import FeatureSource
from shopconfig.settings import resolve_feature_repo

FAMILY_MODULES: tuple[str, ...] = (
    "customer_activity",
    "customer_profile",
    "customer_reviews",
    "product_stats",
    "product_copurchase",
    "collection_stats",
    "product_membership",
    "customer_collections",
    "customer_rhythm",
)
PACKAGE = "pipelines.families"


def families(
    strict: bool = False, repo: Path | None = None
) -> dict[str, ModuleType | DeclaredFamily]:
    """Family modules by source name, in `FAMILY_MODULES` order, then the views declared in the
    feature repo (`repo`, default the settings' one: $SHOPFEAST_FEATURE_REPO)."""
    found = written(strict)
    for view in declared(repo, found):
        found[view.name] = DeclaredFamily(view)
    return found


def declared(
    repo: Path | None = None, written_families: dict | None = None
) -> list[declarations.DeclaredView]:
    """The feature repo's declared views, checked (raises declarations.DeclarationError)."""
    fams = written() if written_families is None else written_families
    reserved = {}
    for name, module in fams.items():
        reserved[name] = "a family's view name"
        for f in module.SOURCE.features:
            reserved[f.name] = f"a feature of the {name} family"
    for name, source in realtime.SOURCES.items():
        reserved[name] = "a real-time view's name"
        for f in source.features:
            reserved[f.name] = f"a feature of the real-time view {name}"
    return declarations.cached(resolve_feature_repo(repo), reserved)


def family_sources(strict: bool = False) -> dict[str, FeatureSource]:
    """The hand-written families' sources (feature_repo/views/customer.py and product.py)."""
    return {name: module.SOURCE for name, module in written(strict).items()}


def declared_sources(repo: Path | None = None) -> dict[str, FeatureSource]:
    """The sources of the declared views (feature_repo/views/declared.py makes them Feast views)."""
    return {view.name: DeclaredFamily(view).SOURCE for view in declared(repo)}


def written(strict: bool = False) -> dict[str, ModuleType]:
    """The hand-written family modules by source name, in `FAMILY_MODULES` order."""
    found: dict[str, ModuleType] = {}
    for name in FAMILY_MODULES:
        qualified = f"{PACKAGE}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if strict or exc.name != qualified:
                raise
            continue
        if module.SOURCE.name != name:
            raise ValueError(f"{qualified} declares SOURCE {module.SOURCE.name!r}, not {name!r}")
        found[name] = module
    return found


def sources(strict: bool = False, repo: Path | None = None) -> dict[str, FeatureSource]:
    """Every feature source by name (what feature_repo/ turns into Feast views): the families'
    daily sources and the declared views, then the real-time views' (pipelines/realtime.py)."""
    found = {name: module.SOURCE for name, module in families(strict, repo).items()}
    return {**found, **realtime.SOURCES}


def listing(repo: Path | None = None) -> list[dict[str, str]]:
    """One row per feature: view, feature, origin (declared or family), window, owner,
    description, and for a declared one its aggregation (`shopfeast features list`)."""
    rows = []
    for name, module in families(repo=repo).items():
        source = module.SOURCE
        origin = "declared" if isinstance(module, DeclaredFamily) else "family"
        for f in source.features:
            rows.append(
                {
                    "view": name,
                    "feature": f.name,
                    "origin": origin,
                    "window": f.window or "as of T",
                    "owner": f.owner or source.owner,
                    "description": f.description,
                    "definition": f.definition or "",
                }
            )
    return rows


def format_listing(rows: list[dict[str, str]], markdown: bool = False) -> str:
    """`listing` as aligned columns (or a markdown table); descriptions last, not cut."""
    columns = ("view", "feature", "origin", "window", "owner", "description")
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max([len(c), *(len(r[c]) for r in rows)]) for c in columns[:-1]}
    lines = ["  ".join(c.ljust(widths.get(c, 0)) for c in columns).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths.get(c, 0)) for c in columns).rstrip())
    return "\n".join(lines)


def catalogue() -> str:
    """Every declared feature as a markdown table (`python -m pipelines.sources`)."""
    lines = [
        "| source | feature | dtype | window | fill | description |",
        "|---|---|---|---|---|---|",
    ]
    for source in sources().values():
        for f in source.features:
            fill = "null" if f.fill is None else repr(f.fill)
            lines.append(
                f"| {source.name} | `{f.name}` | {f.dtype} | {f.window or 'as of T'} "
                f"| {fill} | {f.description} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    print(catalogue())
