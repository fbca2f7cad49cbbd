"""Service pipelines: Source -> Build -> Deploy (:mod:`.stages`), shared by the local and the AWS engine, and
the runs every engine reports (:mod:`.runs`). Nothing is imported here, so reading a run's record never
loads the model and the synthesizer."""
