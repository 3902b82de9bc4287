"""The admin dashboard: one page at ``/dashboard`` over the admin API, its sign-in and sessions.

Everything it serves is in the package (``static/``, uPlot vendored); no build step.
"""
