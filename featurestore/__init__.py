"""shopfeast's layer over Feast 0.67.

Importing this package (before Feast) turns off Feast's runtime argument type checks for the
process, unless SHOPFEAST_FEAST_TYPECHECKS=1. Feast decorates its classes with typeguard's
`@typechecked`, which instruments a function by re-parsing and re-compiling the whole source of
its module, once per decorated function: 242 times on `import feast`, 3.2 s of its 4.7 s CPU
(every command, test process and API worker paid it), and the instrumented calls check their
arguments at every call (0.24 s of a 300,000-row historical retrieval). The checks validate the
argument types of Feast's own constructors; the declarations in feature_repo/ still get them,
because `feast apply` and the plan run with SHOPFEAST_FEAST_TYPECHECKS=1
(featurestore.store.feast_cli, feast_plan). Python's -O does the same for every decorator, and
also drops asserts.
"""

from __future__ import annotations

import os
from typing import Any

TYPECHECKS = "SHOPFEAST_FEAST_TYPECHECKS"


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """typeguard.typechecked's signature (`@typechecked` or `@typechecked(...)`), no checks."""
    if target is None:
        return lambda f: f
    return target


if os.environ.get(TYPECHECKS) != "1":
    import typeguard

    typeguard.typechecked = _unchecked
