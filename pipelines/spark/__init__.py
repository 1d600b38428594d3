"""The feature pipelines on Apache Spark (docs/scaling.md): Java, the session, the engine."""
