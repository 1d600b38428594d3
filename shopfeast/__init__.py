"""shopfeast: a declarative, point-in-time-correct feature store for e-commerce ML, built on Feast."""

__version__ = "0.1.0"
