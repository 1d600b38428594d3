"""shopfeast configuration: the one settings object (the bottom layer; imports nothing of ours)."""
