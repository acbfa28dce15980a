"""`python -m keyflows.conformance ...` is the `keyflows` command."""

from keyflows.conformance.cli import main

main()
