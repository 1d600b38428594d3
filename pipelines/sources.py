"""All feature sources, collected from their family modules (each declares its SOURCE once).

Feast definitions (feature_repo/) and the pipeline runner both start here. The family modules are
listed by name so a family still being written does not break the others: `families()` skips a
module that does not exist yet, and tests/pipelines/test_pipelines_specs.py fails until all are
present.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from pipelines.specs import FeatureSource

FAMILY_MODULES: tuple[str, ...] = (
    "customer_activity",
    "customer_profile",
    "customer_reviews",
    "product_stats",
    "product_copurchase",
)
PACKAGE = "pipelines.families"


def families(strict: bool = False) -> dict[str, ModuleType]:
    """Family modules by source name, in `FAMILY_MODULES` order."""
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


def sources(strict: bool = False) -> dict[str, FeatureSource]:
    """Every declared feature source by name (what feature_repo/ turns into Feast views)."""
    return {name: module.SOURCE for name, module in families(strict).items()}


def catalog() -> str:
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
    print(catalog())
