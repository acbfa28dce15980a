"""`python -m keyflows.reference`: the same as `keyflows serve`."""

from keyflows.reference.cli import serve_command

if __name__ == "__main__":
    serve_command(prog_name="python -m keyflows.reference")
