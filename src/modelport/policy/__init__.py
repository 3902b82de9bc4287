"""Who may call what, how often and for how much: keys, limits, budgets, browser tokens."""
