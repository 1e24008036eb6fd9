"""HTTP routers, one per resource; ``create_app`` mounts every router in ``ROUTERS``."""

from fastapi import APIRouter

from service.api import health

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (health.router,)
