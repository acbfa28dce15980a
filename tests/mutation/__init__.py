"""Mutation testing of the conformance runner against the reference server."""
