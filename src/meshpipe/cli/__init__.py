"""The command line. :func:`main` is the one error boundary: every meshpipe error becomes a message and an
exit status (2 for bad input, 1 for a failed operation); nothing reaches a user as a traceback."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from meshpipe.cli.fast import run as run_fast

    # Read commands answer before Typer, Rich and pydantic are even loaded (cli/fast.py).
    try:
        fast = run_fast(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    if fast is not None:
        return fast

    from meshpipe.cli.app import app
    from meshpipe.cli.output import err, print_error
    from meshpipe.errors import MeshpipeError

    try:
        # Typer's standalone mode handles usage errors itself (message + exit 2) and ends in SystemExit.
        app(args=argv, prog_name="meshpipe")
    except MeshpipeError as exc:
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def run() -> None:
    sys.exit(main())
