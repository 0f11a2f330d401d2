"""The A/B overhead benchmark, its loads, servers and profile."""
