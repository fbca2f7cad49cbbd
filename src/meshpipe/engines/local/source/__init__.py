"""Source: each service's config repo (bare git, with a post-receive hook) and the hook that tells the
environment's daemon about a push."""
