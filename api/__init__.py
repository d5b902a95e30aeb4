"""The HTTP API (FastAPI): owners, clinicians and admins; build it with
:func:`api.app.create_app`. Importing this package builds nothing."""
