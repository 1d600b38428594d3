"""Feature families: one module per feature source (see pipelines/family.py for the interface)."""
