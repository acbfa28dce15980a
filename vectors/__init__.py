"""Test vectors generated from the executable specification, with their JSON Schemas.

`keyflows vectors generate | check | verify` (vectors/cli.py); one generator module per
flow (key_derivation.py, keypair_publication.py); the file model in framework.py.
"""
