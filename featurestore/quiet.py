"""Feast's warnings that say nothing true about this repository, filtered where shopfeast runs it.

- FileSource validation checks that a source's path exists without expanding globs; every source
  here is `DIR/features/<source>/*.parquet`, so each `apply` warned five times although the files
  are there. The warning is dropped when the glob matches files and kept when it matches none.
- Every read through an on-demand view warns that on-demand views are "experimental". They are
  part of this product's contract, reviewed and tested here (tests/featurestore/test_feast_odfv.py).
- ibis, under Feast's DuckDB offline store, calls a DuckDB method DuckDB has deprecated: a
  DeprecationWarning per read, nothing for a user to act on.

`install()` is called where shopfeast opens a store (`feast_store.open_store`); `python -m
featurestore.quiet <feast args>` is Feast's own CLI with the filters installed (what
`shopfeast apply` runs). Plain `feast` gets them too: the profiles' offline store
(featurestore/offline.py) imports featurestore/repo_env.py, which installs them when Feast reads
the yaml.
"""

from __future__ import annotations

import glob
import logging
import re
import warnings

_FILE_SOURCE_LOGGER = "feast.infra.offline_stores.file_source"
_UNVALIDATED = re.compile(r"Could not validate FileSource path '(?P<path>[^']*)'")
_installed = False


class _GlobThatMatches(logging.Filter):
    """Drop Feast's "could not validate" for a glob path that does match files."""

    def filter(self, record: logging.LogRecord) -> bool:
        m = _UNVALIDATED.match(record.getMessage())
        if not m or not glob.has_magic(m["path"]):
            return True
        path = m["path"].removeprefix("file://")
        return not glob.glob(path)


def install() -> None:
    """Install the filters once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    # Feast's modules put their own `simplefilter("once", ...)` first in the list when imported:
    # import them first, so that these filters go before theirs.
    import feast  # noqa: F401
    import feast.feature_store  # noqa: F401

    logging.getLogger(_FILE_SOURCE_LOGGER).addFilter(_GlobThatMatches())
    warnings.filterwarnings(
        "ignore",
        message="On demand feature view is an experimental feature",
        category=RuntimeWarning,
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis(\.|$)")


def main() -> None:
    install()
    from feast.cli.cli import cli

    cli()


if __name__ == "__main__":
    main()
