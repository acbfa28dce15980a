"""The executable specification of keyflows.

Sans-I/O: every function here is pure over bytes and plain records. Randomness and
the current time are parameters; nothing here opens a socket, reads a clock or draws
from a global random source.
"""

PROFILE = "v1"
SPEC_VERSION = "1.0.0"
# Where the specification stands: "draft" until it is published as final. Every page
# of the spec site carries it beside the version.
SPEC_STATUS = "draft"
