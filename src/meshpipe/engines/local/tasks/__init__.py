"""Tasks: what ECS does on one machine. The supervisor keeps every version's tasks (sidecar and app) and
the gateway running and checked; the deploy stage starts a version's tasks; restore takes over what a
previous daemon left running; images turn a container image into a local command; processes and spawn
are the one place that starts, signals and finds operating-system processes."""
