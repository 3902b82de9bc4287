"""Stand-ins for the outside world: fake providers that speak real HTTP."""
