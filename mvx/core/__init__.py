"""The sans-IO core: the sync decisions, the typed protocol and its encoding, policies."""
