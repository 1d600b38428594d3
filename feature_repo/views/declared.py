"""Views declared as aggregations (feature_repo/aggregations.yaml, pipelines/declarations.py).

Each declared view becomes a batch source (a FileSource; a SparkSource on the spark profile) and
a feature view through the same functions as the families' views; the names come from the
declarations, so this module defines them by name at import (Feast collects the views among its
globals). A bad declaration stops `feast plan` and `feast apply` with one line naming the file,
the view, the feature and the field.
"""

import click
from entities import ENTITIES

from featurestore.schema import batch_source, feature_view
from pipelines.declarations import DeclarationError
from pipelines.sources import declared_sources

try:
    _sources = declared_sources()
except DeclarationError as exc:  # Feast's CLI prints a ClickException as one line
    raise click.ClickException(str(exc)) from None

declared = {
    name: feature_view(source, ENTITIES, batch_source(source)) for name, source in _sources.items()
}
globals().update(declared)
