"""The ISA model and the canonical spec: per-ISA tables, canonical calls and their traits, decoding."""
