"""The keyflows reference key server: Starlette on uvicorn, SQLite (WAL) storage.

It depends on keyflows.spec for every check and is tested, like any other server, by the
conformance runner over HTTP only.
"""
