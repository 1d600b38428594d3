"""shopfeast: a declarative, point-in-time-correct feature store for e-commerce ML on Feast."""

__version__ = "0.1.0"
