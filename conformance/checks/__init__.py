"""Conformance checks, one module per flow (common: capabilities, auth, limits, errors)."""
