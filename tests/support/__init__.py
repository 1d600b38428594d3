"""Test helpers shared across packages: shops to build, services to claim, the oracle."""
