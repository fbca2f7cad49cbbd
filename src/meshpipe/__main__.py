"""``python -m meshpipe``: the same as the ``meshpipe`` command."""

from meshpipe.cli import run

run()
