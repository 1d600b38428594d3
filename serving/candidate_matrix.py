"""The ranker's input matrix for one customer's candidates, built from per-product blocks.

`OnlineFeatures.read` joins a recommendation's 200 (customer, product) rows into columns, runs
every on-demand view over them and `to_matrix` turns the columns into floats: about half of a
recommendation's CPU, most of it redoing per request what depends on the product alone. Here the
same matrix is assembled from parts (issue 17, item 3):

- each product's ranker inputs from its stored views, already floats, one row of a matrix kept
  in process, and its inputs of product_age and customer_product_match (`ProductInputs`): made
  when its cached row is first used and again only when the row is read anew (the cache entry is
  then another object; entries are checked against Redis `_ts` by every request, as before);
- the customer's inputs, and the on-demand views of the customer alone, for one row;
- the views keyed by both (customer x product) and the on-demand views over those and the
  customer, computed by `OnlineFeatures.on_demand` as `read` computes them;
- product_age and customer_product_match as numpy / short loops over the candidates' parts
  (featurestore/odfv.py).

The numbers are those of `read` + `to_matrix`, bit for bit (tests/serving/
test_exact_product_cache.py compares them on a real Redis, also after a product row is written).
A service whose layout this does not cover (a product view not cached, an on-demand view over
product rows other than those two, a feature name in two places) gets no layout: the scorer
reads it the general way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from feast import OnDemandFeatureView

from featurestore.odfv import (
    OPTIONAL_CATEGORIES,
    ProductInputs,
    age_for_candidates,
    instant_seconds,
    match_customer,
    match_for_candidates,
)
from featurestore.online import CandidateRows, OnlineFeatures, request_value
from training.matrix import to_matrix

PRODUCT_AGE = "product_age"
PRODUCT_MATCH = "customer_product_match"
# over the customer x product view, which is sparse: its rows without a pair row have the same
# inputs (the function reads neither id), so it runs on the live rows and one of the others
PAIR_AFFINITY = "customer_product_affinity"
REQUEST_TIME = "event_timestamp"


class CandidateMatrix:
    """Builds `to_matrix(read(service, ...).columns, columns, n)` for one customer's candidates
    from a `CandidateRows`; `layout` is None when the service cannot be built this way."""

    def __init__(
        self,
        online: OnlineFeatures,
        service: str,
        columns: Sequence[str],
        customer_key: str = "customer_id",
        product_key: str = "product_id",
        per_row: frozenset[str] = frozenset(),
    ) -> None:
        """`per_row`: the request fields given one value per candidate (the others: one)."""
        self.online = online
        self.service = service
        self.columns = tuple(columns)
        self.customer_key = customer_key
        self.product_key = product_key
        self.per_row = per_row
        self.width = len(self.columns)
        self.blocks: dict[Any, tuple] = {}  # product id -> (entries, row of `rows`, inputs)
        self.rows = np.full((64, self.width), np.nan)
        self.layout = self._layout()

    # -- what comes from where, worked out once ---------------------------------------------

    def _layout(self):
        plan = self.online.plan(self.service)
        customer, products, pairs = [], [], []
        for vp in plan.views:
            keys = set(vp.join_keys)
            if keys == {self.customer_key}:
                customer.append(vp)
            elif vp.join_keys == (self.product_key,) and vp.cached:
                products.append(vp)
            elif keys == {self.customer_key, self.product_key}:
                pairs.append(vp)
            else:
                return None
        names = {
            "customer": {vp.view.projection.name_to_use() for vp in customer},
            "product": {vp.view.projection.name_to_use() for vp in products},
            "pair": {vp.view.projection.name_to_use() for vp in pairs},
        }
        origin: dict[str, tuple] = {}
        clash: set[str] = set()

        def claim(name: str, where: tuple) -> None:
            if name in origin:
                clash.add(name)
            origin[name] = where

        for vp in customer:
            for f in vp.features:
                claim(f, ("customer",))
        for vp in products:
            for f in vp.features:
                claim(f, ("product",))
        for vp in pairs:
            for f in vp.features:
                claim(f, ("pair", vp.view.name))
        generic: list[OnDemandFeatureView] = []
        sparse: list[OnDemandFeatureView] = []
        handled: dict[str, OnDemandFeatureView] = {}
        for odfv in plan.odfvs:
            sources = set(odfv.source_feature_view_projections)
            fields = {f.name for rs in odfv.source_request_sources.values() for f in rs.schema}
            outputs = [f.name for f in odfv.features]
            if sources and sources <= names["customer"] and not fields & self.per_row:
                where = ("customer",)  # computed by the customer's one-row read
            elif (
                odfv.name == PRODUCT_AGE
                and sources <= names["product"]
                and fields <= {REQUEST_TIME}
            ):
                where = ("handled", PRODUCT_AGE)
                handled[PRODUCT_AGE] = odfv
            elif (
                odfv.name == PRODUCT_MATCH
                and sources <= names["product"] | names["customer"]
                and not fields
            ):
                where = ("handled", PRODUCT_MATCH)
                handled[PRODUCT_MATCH] = odfv
            elif not sources & names["product"]:
                where = ("generic",)
                generic.append(odfv)
                if (
                    odfv.name == PAIR_AFFINITY
                    and sources & names["pair"]
                    and not fields - {REQUEST_TIME}
                    and not fields & self.per_row
                ):
                    sparse.append(odfv)
            else:
                return None
            for name in outputs:
                claim(name, where)
        served = set(plan.feature_names)
        layout = {"customer": [], "product": [], "other": [], "handled": {}}
        for j, c in enumerate(self.columns):
            if c not in served or c not in origin:
                continue  # not in the service's answer: to_matrix's NaN column
            if c in clash:
                return None
            kind = origin[c][0]
            if kind == "handled":
                layout["handled"].setdefault(origin[c][1], []).append((j, c))
            elif kind == "pair" or kind == "generic":
                layout["other"].append((j, c, origin[c]))
            else:
                layout[kind].append((j, c))
        product_inputs: set[str] = set()
        for odfv in handled.values():
            product_inputs |= _source_features(odfv)
        layout.update(
            product_views=products,
            pair_views=pairs,
            generic=[o for o in generic if o not in sparse],
            sparse=sparse,
            odfvs=handled,
            product_inputs=product_inputs,
            shares=PRODUCT_MATCH in handled
            and OPTIONAL_CATEGORIES in _source_features(handled[PRODUCT_MATCH]),
            match_customer=_source_features(handled[PRODUCT_MATCH])
            if PRODUCT_MATCH in handled
            else set(),
        )
        return layout

    # -- per request ------------------------------------------------------------------------

    def build(
        self,
        rows: CandidateRows,
        customer_id: Any,
        ids: Sequence[Any],
        now: datetime,
        request: dict[str, Any],
    ) -> np.ndarray:
        """The matrix, rows in `ids` order, columns in `columns` order."""
        layout = self.layout
        assert layout is not None
        n = len(ids)
        views = layout["product_views"]
        entries = [rows.products[vp.view.name] for vp in views]
        slots, inputs = self._products(ids, entries, views)
        X = self.rows.take(slots, axis=0)
        if layout["customer"]:
            values = rows.customer.columns
            js = [j for j, _ in layout["customer"]]
            names = [c for _, c in layout["customer"]]
            X[:, js] = to_matrix({c: values.get(c, [None]) for c in names}, names, 1)[0]
        if layout["other"]:
            X[:, [j for j, _, _ in layout["other"]]] = self._others(
                rows, customer_id, ids, request, n
            )
        handled = layout["handled"]
        if PRODUCT_AGE in handled:
            now_s = instant_seconds(request_value(request.get(REQUEST_TIME, now)))
            age = age_for_candidates(now_s, inputs)
            for j, _ in handled[PRODUCT_AGE]:
                X[:, j] = age
        if PRODUCT_MATCH in handled:
            wanted = layout["match_customer"]
            side = match_customer(
                {k: v for k, v in rows.customer_values.items() if k in wanted},
                has_shares=layout["shares"],
            )
            out = dict(
                zip(
                    [f.name for f in layout["odfvs"][PRODUCT_MATCH].features],
                    match_for_candidates(side, inputs),
                    strict=True,
                )
            )
            for j, c in handled[PRODUCT_MATCH]:
                X[:, j] = out[c]
        return X

    def _others(self, rows: CandidateRows, customer_id, ids, request, n: int) -> np.ndarray:
        """The customer x product views' columns and the on-demand views over them."""
        layout = self.layout
        columns: dict[str, list] = {}
        for vp in layout["pair_views"]:
            columns.update(rows.pairs[vp.view.name][2])
        if layout["generic"] or layout["sparse"]:
            base = {
                self.customer_key: [customer_id] * n,
                self.product_key: list(ids),
                **{k: [v] * n for k, v in rows.customer_values.items()},
                **columns,
            }
            if layout["generic"]:
                generic = layout["generic"]
                columns.update(self.online.on_demand(self.service, generic, base, request, n))
            if layout["sparse"]:
                columns.update(self._sparse(rows, base, request, n))
        names = [c for _, c, _ in layout["other"]]
        return to_matrix(columns, names, n)

    def _sparse(self, rows: CandidateRows, base: dict, request: dict, n: int) -> dict:
        """The sparse on-demand views, run on the rows with a pair row and one without: every
        row without has that one's outputs."""
        layout = self.layout
        founds = [rows.pairs[vp.view.name][0] for vp in layout["pair_views"]]
        found = [any(f) for f in zip(*founds, strict=True)]
        live = [i for i, f in enumerate(found) if f]
        pick = live + [found.index(False)] if len(live) < n else live
        slot = [len(live)] * n
        for at, i in enumerate(live):
            slot[i] = at
        sub = {k: [column[i] for i in pick] for k, column in base.items()}
        asked = {k: [v[i] for i in pick] if isinstance(v, list) else v for k, v in request.items()}
        out = self.online.on_demand(self.service, layout["sparse"], sub, asked, len(pick))
        return {name: [values[j] for j in slot] for name, values in out.items()}

    def _products(self, ids, entries: list[list[tuple]], views) -> tuple[list[int], list]:
        """Each candidate's row of `rows` and its ProductInputs, made again for a product whose
        cache entries are not the objects they were made from."""
        blocks = self.blocks
        slots, inputs = [], []
        if len(entries) == 1:
            together = [(e,) for e in entries[0]]
        else:
            together = list(zip(*entries, strict=True))
        for pid, ents in zip(ids, together, strict=True):
            block = blocks.get(pid)
            if block is None or not _same(block[0], ents):
                block = self._block(pid, ents, views, block)
            slots.append(block[1])
            inputs.append(block[2])
        return slots, inputs

    def _block(self, pid, ents: tuple, views, old) -> tuple:
        values: dict[str, Any] = {}
        for vp, entry in zip(views, ents, strict=True):
            row = entry[2]
            for f in vp.features:
                values[f] = None if row is None else row.get(f)
        if old is not None:
            slot = old[1]
        else:
            slot = len(self.blocks)
            if slot >= len(self.rows):
                grown = np.full((2 * len(self.rows), self.width), np.nan)
                grown[: len(self.rows)] = self.rows
                self.rows = grown
        names = [c for _, c in self.layout["product"]]
        if names:
            row = to_matrix({c: [values.get(c)] for c in names}, names, 1)[0]
            self.rows[slot, [j for j, _ in self.layout["product"]]] = row
        wanted = self.layout["product_inputs"]
        block = (ents, slot, ProductInputs({k: v for k, v in values.items() if k in wanted}, pid))
        self.blocks[pid] = block
        return block


def _same(a: tuple, b: tuple) -> bool:
    if len(a) == 2:
        return a[0] is b[0] and a[1] is b[1]
    return all(x is y for x, y in zip(a, b, strict=True))


def _source_features(odfv: OnDemandFeatureView) -> set[str]:
    return {f.name for p in odfv.source_feature_view_projections.values() for f in p.features}
