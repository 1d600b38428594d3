"""`shopfeast plan` drops exactly Feast's false "Updated" (a source's meta timestamps) and keeps
every real difference. Feast's own diff objects, built the way `FeatureStore.plan` builds them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feast import Entity, FeatureView, FileSource
from feast.diff.property_diff import TransitionType
from feast.diff.registry_diff import RegistryDiff, diff_registry_objects
from feast.infra.registry.registry import FeastObjectType

from featurestore.plan import real_changes

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _view(path: str = "/data/features/x/*.parquet", stamped: datetime | None = None, **kw):
    source = FileSource(name="x_source", path=path, timestamp_field="event_timestamp")
    source.created_timestamp = source.last_updated_timestamp = stamped
    view = FeatureView(name="x", entities=[Entity(name="c", join_keys=["c"])], source=source, **kw)
    return view


def _plan(stored: FeatureView, declared: FeatureView) -> RegistryDiff:
    diff = RegistryDiff()
    diff.add_feast_object_diff(
        diff_registry_objects(stored, declared, FeastObjectType.FEATURE_VIEW)
    )
    return diff


def _materialized(view: FeatureView) -> FeatureView:
    view.materialization_intervals.append((T0, T0 + timedelta(days=1)))
    return view


def test_a_materialized_view_whose_only_difference_is_the_stamp_is_unchanged() -> None:
    stored = _materialized(_view(stamped=T0))  # what `feast apply` stored, then materialize
    feast_says = _plan(stored, _view())
    (bug,) = feast_says.feast_object_diffs
    assert bug.transition_type == TransitionType.UPDATE  # what plain `feast plan` reports
    assert [p.property_name for p in bug.feast_object_property_diffs] == ["batch_source"]
    assert real_changes(feast_says).feast_object_diffs == []


def test_a_real_change_next_to_the_stamp_is_kept() -> None:
    stored = _materialized(_view(stamped=T0))
    changed = real_changes(_plan(stored, _view(tags={"reviewed": "yes"})))
    (d,) = changed.feast_object_diffs
    assert d.transition_type == TransitionType.UPDATE
    assert [p.property_name for p in d.feast_object_property_diffs] == ["tags"]


def test_a_new_source_path_is_a_change_even_with_the_stamp() -> None:
    stored = _materialized(_view(stamped=T0))
    changed = real_changes(_plan(stored, _view(path="/elsewhere/features/x/*.parquet")))
    (d,) = changed.feast_object_diffs
    assert [p.property_name for p in d.feast_object_property_diffs] == ["batch_source"]


def test_created_and_deleted_objects_are_changes() -> None:
    diff = RegistryDiff()
    for transition in (TransitionType.CREATE, TransitionType.DELETE, TransitionType.UNCHANGED):
        d = diff_registry_objects(_view(), _view(), FeastObjectType.FEATURE_VIEW)
        d.transition_type = transition
        diff.add_feast_object_diff(d)
    kept = [d.transition_type for d in real_changes(diff).feast_object_diffs]
    assert kept == [TransitionType.CREATE, TransitionType.DELETE]
