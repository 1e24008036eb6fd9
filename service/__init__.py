"""privflow HTTP service: the app factory, settings, metrics, routers and the ``privflow`` CLI.

Map of the package (importing it has no side effects; ``service.cli`` stays light so
``privflow --help`` is fast):

- ``service.settings``    Settings (``PRIVFLOW_*`` environment); no module-level instance
- ``service.app``         create_app(settings): routers, metrics middleware, kernel warm-up lifespan
- ``service.metrics``     per-app Prometheus registry, instruments and request middleware
- ``service.api``         one router per resource (``health``: /healthz, /readyz, /metrics)
- ``service.cli``         ``privflow serve | warm``
"""

__all__: list[str] = []
