"""The mesh model: routes, gateway routes and routing plans, checked against App Mesh's limits. Pure."""
