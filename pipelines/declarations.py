"""Declared aggregations: features written as a few lines of YAML in the feature repo.

`feature_repo/aggregations.yaml` (or every `*.yaml` under `feature_repo/aggregations/`) holds views:

    views:
      - name: customer_orders                # the Feast view (and the source under DIR/features/)
        entity: customer                     # customer | product | customer_product
        source: orders                       # orders | order_items | events | reviews
        filter: status != 'cancelled'        # optional: rows every feature of the view reads
        description: ...
        owner: growth@shopfeast
        tags: {domain: customer}
        features:
          - name: discounted_orders_14d
            function: count                  # count count_distinct sum mean min max last share
            filter: discount_amount > 0      # optional: rows this feature reads (and the view's)
            window: 14d                      # N whole days ("14d"), or lifetime
            description: ...
            owner: ...                       # optional: the view's
            tags: {...}                      # optional
          - name: discount_share_60d
            function: share                  # share of the rows for which `where` holds
            where: discount_amount > 0
            window: 60d
            description: ...

The words follow Feast's `Aggregation` (column, function, time window, name). `column` names the
value a function reads (count counts rows, or a column's non-null values when given); a feature may
read another `source` than its view's (the view's filter is for the view's source only). Rows
reach an entity through their key columns: orders through `customer_id`, or, for products, through
their order items (each (order, product) once, with the order's columns); order items carry their
order's columns (`status`, `customer_id`, ...). Filters are a small checked language
(pipelines.predicate), never `eval`.

Everything is checked when the file is read (`shopfeast features`, `feast plan`): one error line
names the file and line, the view and feature, and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines import predicate
from pipelines.contract import TABLES
from pipelines.predicate import Kind, Predicate, PredicateError
from pipelines.specs import Drift, Dtype, Feature, FeatureSource

ENTITIES: dict[str, tuple[str, ...]] = {
    "customer": ("customer_id",),
    "product": ("product_id",),
    "customer_product": ("customer_id", "product_id"),
}
SOURCES = ("orders", "order_items", "events", "reviews")
TIME_COLUMN = {
    "orders": "order_ts",
    "order_items": "order_ts",
    "events": "event_ts",
    "reviews": "review_ts",
}
FUNCTIONS = ("count", "count_distinct", "sum", "mean", "min", "max", "last", "share")
NEEDS_COLUMN = {"count_distinct", "sum", "mean", "min", "max", "last"}
NUMERIC_ONLY = {"sum", "mean"}
_WINDOW = re.compile(r"^([1-9][0-9]{0,4})d$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
DEFAULT_OWNER = "feature-platform@shopfeast"

_VIEW_KEYS = {"name", "entity", "source", "filter", "description", "owner", "tags", "features"}
_FEATURE_KEYS = {
    "name",
    "function",
    "column",
    "window",
    "filter",
    "where",
    "source",
    "description",
    "owner",
    "tags",
    "drift",
}
_DRIFT_KEYS = {"mode", "warn", "alert", "reason"}


class DeclarationError(ValueError):
    """A declaration that cannot be used. The message is one line: file:line: where: what."""


@dataclass(frozen=True)
class Aggregation:
    """One declared feature: `function` of `column` over the rows of `source` in a window."""

    name: str
    function: str
    column: str | None
    window_days: int | None  # None: lifetime
    source: str
    filter: Predicate | None  # the feature's filter, and the view's when it reads the view's source
    where: Predicate | None  # share only
    description: str
    owner: str
    tags: tuple[tuple[str, str], ...]
    dtype: Dtype
    fill: Any
    column_kind: str | None = None  # the contract kind of `column`: int, float, bool, ...
    drift: Drift | None = None  # how the monitor compares it (None: the default for its kind)

    @property
    def window(self) -> str:
        return "lifetime" if self.window_days is None else f"{self.window_days}d"

    def definition(self) -> str:
        """The aggregation in one line (shown in listings, stored in tags, fingerprinted)."""
        arg = self.column or ("*" if self.function != "share" else self.where.text)
        text = f"{self.function}({arg}) over {self.source}, {self.window}"
        return text + (f", where {self.filter.text}" if self.filter else "")


@dataclass(frozen=True)
class DeclaredView:
    name: str
    entity: str
    source: str
    description: str
    owner: str
    tags: tuple[tuple[str, str], ...]
    features: tuple[Aggregation, ...]
    file: str
    filter: Predicate | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        return ENTITIES[self.entity]

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.source for f in self.features))

    def feature_source(self) -> FeatureSource:
        return FeatureSource(
            name=self.name,
            entity=self.entity,
            description=self.description,
            owner=self.owner,
            tags=(*self.tags, ("origin", "declared"), ("declared_in", self.file)),
            features=tuple(
                Feature(
                    a.name,
                    a.dtype,
                    a.description,
                    a.window,
                    a.fill,
                    owner=a.owner,
                    tags=a.tags,
                    drift=a.drift,
                    definition=a.definition(),
                )
                for a in self.features
            ),
        )


def row_columns(table: str, entity: str) -> dict[str, Kind]:
    """The columns a filter or function of `table` may read, for rows keyed by `entity`."""
    kinds = {c.name: predicate.CONTRACT_KINDS[c.kind] for c in TABLES[table].clean_columns()}
    if table == "order_items":  # each item carries its order's columns
        for c in TABLES["orders"].columns:
            kinds.setdefault(c.name, predicate.CONTRACT_KINDS[c.kind])
    if table == "orders" and "product_id" in ENTITIES[entity]:  # orders reach products via items
        kinds["product_id"] = "string"
    return kinds


# --- loading ------------------------------------------------------------------------------------


def declaration_files(repo: Path) -> list[Path]:
    """`aggregations.yaml` and `aggregations/*.yaml` of a feature repo, in a stable order."""
    repo = Path(repo)
    files = [repo / "aggregations.yaml"] if (repo / "aggregations.yaml").is_file() else []
    folder = repo / "aggregations"
    if folder.is_dir():
        files += sorted(p for p in folder.glob("*.yaml") if p.is_file())
    return files


def load(repo: Path, reserved: dict[str, str] | None = None) -> list[DeclaredView]:
    """Every declared view of the feature repo `repo`, checked; raises DeclarationError.

    `reserved` maps names already taken (family views and their features) to their owner view,
    so a declaration cannot shadow them.
    """
    taken = dict(reserved or {})
    views: list[DeclaredView] = []
    for path in declaration_files(repo):
        label = _label(path, Path(repo))
        for view in _load_file(path, label):
            _claim(taken, view.name, f"view {view.name}", label, view)
            for f in view.features:
                _claim(taken, f.name, f"view {view.name}", label, view, feature=f.name)
            views.append(view)
    return views


def _claim(
    taken: dict[str, str],
    name: str,
    owner: str,
    label: str,
    view: DeclaredView,
    feature: str | None = None,
) -> None:
    if name in taken:
        where = f"view {view.name}" + (f", feature {feature}" if feature else "")
        raise DeclarationError(f"{label}: {where}: name: {name!r} is already {taken[name]}")
    taken[name] = f"declared by {owner}" if feature else "a view name"


def _label(path: Path, repo: Path) -> str:
    try:
        return f"{repo.name}/{path.relative_to(repo).as_posix()}"
    except ValueError:
        return str(path)


class _Loader(yaml.SafeLoader):
    """Safe YAML whose mappings remember their line (for error messages)."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    value = _LineDict(loader.construct_mapping(node, deep=True))
    value.line = node.start_mark.line + 1
    return value


class _LineDict(dict):
    line = 0


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _load_file(path: Path, label: str) -> list[DeclaredView]:
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 (safe)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DeclarationError(f"{label}{line}: not valid YAML: {problem}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) != {"views"} or not isinstance(doc["views"], list):
        raise DeclarationError(f"{label}: expected one key, 'views', holding a list of views")
    return [_view(entry, label, i) for i, entry in enumerate(doc["views"], start=1)]


def _fail(label: str, node: Any, where: str, what: str) -> DeclarationError:
    line = getattr(node, "line", 0)
    return DeclarationError(f"{label}{f':{line}' if line else ''}: {where}: {what}")


def _view(entry: Any, label: str, number: int) -> DeclaredView:
    if not isinstance(entry, dict):
        raise DeclarationError(f"{label}: view #{number}: expected a mapping")
    name = entry.get("name")
    where = f"view {name}" if isinstance(name, str) else f"view #{number}"

    def fail(what: str, node: Any = entry) -> DeclarationError:
        return _fail(label, node, where, what)

    unknown = sorted(set(entry) - _VIEW_KEYS)
    if unknown:
        raise fail(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_VIEW_KEYS))})")
    _name(name, fail)
    entity = entry.get("entity")
    if entity not in ENTITIES:
        raise fail(f"entity: {entity!r} is not one of {', '.join(ENTITIES)}")
    source = _source(entry.get("source"), fail)
    description = _text(entry, "description", fail)
    owner = _text(entry, "owner", fail, DEFAULT_OWNER)
    tags = _tags(entry.get("tags"), fail)
    view_filter_text = entry.get("filter")
    features = entry.get("features")
    if not isinstance(features, list) or not features:
        raise fail("features: expected a non-empty list")
    aggs = []
    for i, f in enumerate(features, start=1):
        aggs.append(_feature(f, i, entity, source, view_filter_text, owner, label, where))
    names = [a.name for a in aggs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise fail(f"features: {dupes[0]!r} is declared twice")
    view_filter = None
    if view_filter_text is not None:
        view_filter = _predicate(view_filter_text, source, entity, lambda w: fail(f"filter: {w}"))
    return DeclaredView(
        name=name,
        entity=entity,
        source=source,
        description=description,
        owner=owner,
        tags=tags,
        features=tuple(aggs),
        file=label,
        filter=view_filter,
    )


def _feature(
    entry: Any,
    number: int,
    entity: str,
    view_source: str,
    view_filter: str | None,
    view_owner: str,
    label: str,
    view_where: str,
) -> Aggregation:
    if not isinstance(entry, dict):
        raise _fail(label, entry, view_where, f"feature #{number}: expected a mapping")
    name = entry.get("name")
    where = f"{view_where}, feature {name if isinstance(name, str) else f'#{number}'}"

    def fail(what: str) -> DeclarationError:
        return _fail(label, entry, where, what)

    unknown = sorted(set(entry) - _FEATURE_KEYS)
    if unknown:
        raise fail(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FEATURE_KEYS))})")
    _name(name, fail)
    source = _source(entry.get("source", view_source), fail)
    columns = row_columns(source, entity)
    function = entry.get("function")
    if function not in FUNCTIONS:
        raise fail(f"function: {function!r} is not one of {', '.join(FUNCTIONS)}")
    column = entry.get("column")
    if column is not None:
        if function == "share":
            raise fail("column: share takes no column (it counts rows; give 'where')")
        if not isinstance(column, str) or column not in columns:
            known = ", ".join(sorted(columns))
            raise fail(f"column: unknown column {column!r} in {source} (columns: {known})")
        kind = columns[column]
        if function in NUMERIC_ONLY and kind not in ("number", "bool"):
            raise fail(f"column: {function} needs a number or bool column, {column} is a {kind}")
        if function in ("min", "max") and kind == "bool":
            raise fail(f"column: {function} of a bool column; use share or count instead")
    elif function in NEEDS_COLUMN:
        raise fail(f"column: {function} needs a column")
    window = _window(entry.get("window"), fail)
    preds = []
    own = ((view_filter, "filter (the view's)"),) if source == view_source else ()
    for text, what in (*own, (entry.get("filter"), "filter")):
        if text is not None:
            preds.append(
                _predicate(text, source, entity, lambda w, what=what: fail(f"{what}: {w}"))
            )
    row_filter = _combine(preds, source, entity)
    share_where = None
    if function == "share":
        if entry.get("where") is None:
            raise fail("where: share needs 'where', the predicate whose share it is")
        share_where = _predicate(entry["where"], source, entity, lambda w: fail(f"where: {w}"))
    elif entry.get("where") is not None:
        raise fail("where: only share takes 'where' (use 'filter' to select rows)")
    column_kind = contract_kind(source, column) if column else None
    dtype, fill = _output(function, column_kind)
    return Aggregation(
        name=name,
        function=function,
        column=column,
        window_days=window,
        source=source,
        filter=row_filter,
        where=share_where,
        description=_text(entry, "description", fail),
        owner=_text(entry, "owner", fail, view_owner),
        tags=_tags(entry.get("tags"), fail),
        dtype=dtype,
        fill=fill,
        column_kind=column_kind,
        drift=_drift(entry.get("drift"), dtype, fail),
    )


def contract_kind(table: str, column: str) -> str:
    """The contract kind (int, float, string, timestamp, bool) of a column `table`'s rows carry."""
    for t in (table, "orders", "order_items"):
        for c in TABLES[t].clean_columns():
            if c.name == column:
                return c.kind
    return "string"  # product_id of orders reached through their items


def _output(function: str, kind: str | None) -> tuple[Dtype, Any]:
    """The feature's dtype and its value for an entity with no rows (fill; None = null)."""
    if function in ("count", "count_distinct"):
        return "int64", 0
    if function == "sum":
        return ("float64", 0.0) if kind == "float" else ("int64", 0)
    if function in ("mean", "share"):
        return "float64", None
    dtype: Dtype = {
        "int": "int64",
        "float": "float64",
        "string": "string",
        "timestamp": "unix_timestamp",
        "bool": "bool",
    }[kind]
    return dtype, None


def _combine(preds: list[Predicate], source: str, entity: str) -> Predicate | None:
    if not preds:
        return None
    if len(preds) == 1:
        return preds[0]
    text = " and ".join(f"({p.text})" for p in preds)
    return predicate.parse(text, row_columns(source, entity), source)


def _predicate(text: Any, source: str, entity: str, fail) -> Predicate:
    if not isinstance(text, str):
        raise fail(f"expected an expression in quotes, got {text!r}")
    try:
        return predicate.parse(text, row_columns(source, entity), source)
    except PredicateError as exc:
        raise fail(str(exc)) from None


def _drift(entry: Any, dtype: str, fail) -> Drift | None:
    """`drift: {mode, warn, alert, reason}`: how `shopfeast monitor` compares the feature over
    time (docs/monitoring.md); absent, the default for its kind (pipelines.specs.drift_policy)."""
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise fail("drift: expected a mapping (mode, warn, alert, reason)")
    unknown = sorted(set(entry) - _DRIFT_KEYS)
    if unknown:
        known = ", ".join(sorted(_DRIFT_KEYS))
        raise fail(f"drift: unknown field {unknown[0]!r} (fields: {known})")
    modes = ("distribution", "increment", "skip")  # items: lists only, never declared here
    mode = entry.get("mode", "distribution")
    if mode not in modes:
        raise fail(f"drift: mode {mode!r} is not one of {', '.join(modes)}")
    if mode == "increment" and dtype not in ("int64", "float64"):
        raise fail(f"drift: mode increment needs a number, the feature is a {dtype}")
    default = Drift()
    bounds = {}
    for key in ("warn", "alert"):
        value = entry.get(key, getattr(default, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise fail(f"drift: {key}: {value!r} is not a positive number (a PSI threshold)")
        bounds[key] = float(value)
    if bounds["warn"] > bounds["alert"]:
        raise fail(f"drift: warn {bounds['warn']} is above alert {bounds['alert']}")
    reason = entry.get("reason", "")
    if not isinstance(reason, str) or (mode == "skip" and not reason.strip()):
        raise fail("drift: reason: a skipped feature needs a reason (a non-empty text)")
    return Drift(mode, bounds["warn"], bounds["alert"], reason.strip())


def _name(name: Any, fail) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise fail(f"name: {name!r} is not a snake_case name")


def _source(source: Any, fail) -> str:
    if source not in SOURCES:
        raise fail(f"source: {source!r} is not one of {', '.join(SOURCES)}")
    return source


def _window(window: Any, fail) -> int | None:
    if window == "lifetime":
        return None
    m = _WINDOW.match(window) if isinstance(window, str) else None
    if not m:
        raise fail(f"window: {window!r} is not a whole number of days ('14d') or 'lifetime'")
    return int(m.group(1))


def _text(entry: dict, key: str, fail, default: str | None = None) -> str:
    value = entry.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{key}: expected a non-empty text")
    return value.strip()


def _tags(tags: Any, fail) -> tuple[tuple[str, str], ...]:
    if tags is None:
        return ()
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in tags.items()
    ):
        raise fail("tags: expected a mapping of names to texts")
    return tuple((k, str(v)) for k, v in tags.items())


@dataclass
class _Cache:
    key: tuple = ()
    views: list[DeclaredView] = field(default_factory=list)


_cache = _Cache()


def cached(repo: Path, reserved: dict[str, str] | None = None) -> list[DeclaredView]:
    """`load`, once per repo and file state (modification times): the registry calls it often."""
    files = declaration_files(repo)
    key = (str(Path(repo).resolve()), tuple((str(p), p.stat().st_mtime_ns) for p in files))
    key += (tuple(sorted((reserved or {}).items())),)
    if _cache.key != key:
        _cache.views = load(repo, reserved)
        _cache.key = key
    return _cache.views
