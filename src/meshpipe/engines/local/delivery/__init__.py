"""Delivery: pipeline runs (a push -> Source, Build, Deploy), the rollout controller that shifts traffic
to a new version step by step, and the rollout webhooks it calls."""
