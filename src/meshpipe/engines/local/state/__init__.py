"""What an environment keeps on disk, read by every other part: its folder (``home``), its knobs
(``options``, engine.json), the daemon's files (``daemonfiles``) and state.db (``store``, ``schema``)."""
