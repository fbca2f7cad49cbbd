"""The mesh model: routes, gateway routes and traffic moves, checked against App Mesh's limits. Pure."""
