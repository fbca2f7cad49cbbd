"""The paths of the control API's read endpoints, named once: the operation table (``operations``) routes
them, and the read commands (``reads``) ask them without loading that table."""

STATUS = "/v1/status"
VERSIONS = "/v1/services/{service}/versions"
ROUTE_VIEW = "/v1/routes/{service}/view"
STATS = "/v1/services/{service}/stats"
