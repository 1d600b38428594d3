"""Errors of the Feast integration, importable without importing Feast (the API's error handlers
and start-up checks load this before anything heavy)."""

from __future__ import annotations


class StoreUnavailable(RuntimeError):
    """The online store did not answer within the deadline (a caller may map it to its own)."""


class StoreConfigError(RuntimeError):
    """The feature store cannot be opened (a missing or invalid profile, no registry)."""
