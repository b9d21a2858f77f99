"""The management API (``sync_api``): routes, models, auth, metrics and its OpenAPI document.

``routes.dispatch(request, engine)`` answers one request; ``functions/sync_api/main.py``
is the thin adapter that hands requests, and its process-wide engine, to it.
"""
