"""Progressive delivery: rollout policies, window analysis and the rollout state machine. Pure.

``policy`` holds the rules a rollout policy follows (shared by the manifest's ``Rollout:`` section and
the platform policy's ``rollout:`` default) and the resolved :class:`~meshpipe.delivery.policy.RolloutSpec`;
``weights`` splits traffic between the candidate and every other version; ``analysis`` turns two
counter snapshots into a window's figures and a verdict; ``machine`` is the rollout itself, a state
machine whose every transition is a function of its state, the time and what was observed. Engines
drive it (the local engine's daemon in ``engines/local/delivery/rollouts.py``).
"""
