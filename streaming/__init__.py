"""The event stream: producers, the consumer-group worker, the landing zone (docs/streaming.md)."""
