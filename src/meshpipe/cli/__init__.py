"""The command line. :func:`main` is the one error boundary: every meshpipe error becomes a message and an
exit status (2 for bad input, 1 for a failed operation); nothing reaches a user as a traceback.

Anything else that escapes a command is a bug in meshpipe, not a mistake of the user's: it is reported in
one line with the path of a file holding the traceback, and exit status 70 (``EX_SOFTWARE``). ``--debug``
(anywhere on the command line) or ``MESHPIPE_DEBUG=1`` prints the traceback instead.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own flag would load typing, a tenth of a read command
if TYPE_CHECKING:
    from typing import Any

DEBUG_FLAG = "--debug"
DEBUG_ENV = "MESHPIPE_DEBUG"
BUG_EXIT = 70


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug`` (before a ``--``), and whether it was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:end] if a != DEBUG_FLAG]
    return head + argv[end:], len(head) != end


def main(argv: list[str] | None = None, app: Any = None) -> int:
    """Run the command line (``app``, default meshpipe's own) and return its exit status."""
    given = list(sys.argv[1:] if argv is None else argv)
    args, debug = _split_debug(given)
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if app is None:
        from meshpipe.cli.fast import run as run_fast

        # Read commands answer before Typer, Rich and pydantic are even loaded (cli/fast.py); it leaves
        # anything it does not know, --debug included, to the full command line.
        try:
            fast = run_fast(given)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            return 130
        except Exception as exc:
            return _bug(exc, debug)
        if fast is not None:
            return fast
        from meshpipe.cli.app import app
    from meshpipe.cli.output import err, print_error
    from meshpipe.errors import MeshpipeError

    try:
        # Typer's standalone mode handles usage errors itself (message + exit 2) and ends in SystemExit.
        app(args=args, prog_name="meshpipe")
    except MeshpipeError as exc:
        from meshpipe.cli.readouts import given_env

        print_error(exc, given_env(args))
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except SystemExit as exc:
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:
        return _bug(exc, debug)
    return 0


def _bug(exc: Exception, debug: bool) -> int:
    if debug:
        raise exc
    from meshpipe.cli.crash import report_bug
    from meshpipe.cli.output import err

    report_bug(exc, err)
    return BUG_EXIT


def run() -> None:
    sys.exit(main())
