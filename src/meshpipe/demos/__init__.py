"""The demos ``meshpipe demo`` runs: the walkthrough (``walkthrough``) and progressive delivery from a git
push (``rollout``). Each plays a person at a terminal: it drives an engine through its public operations
(``meshpipe.engines.get_engine``), as the command line does, and the config repos with git."""
