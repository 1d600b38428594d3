"""Training: churn and ranking models on features read through Feast's feature services."""

import featurestore  # noqa: F401  (first: Feast's start-up without its type checks, see there)
