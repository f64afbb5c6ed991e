"""The xentcore HTTP service: FastAPI app, settings, client and the ``xent`` command.

Importing this package has no side effects; build an app with :func:`service.app.create_app`.
"""

__all__: list[str] = []
