"""HTTP routers, one per resource; ``create_app`` mounts every router in ``ROUTERS``."""

from fastapi import APIRouter

from service.api import datasets, flows, generators, health, jobs, keys, memories, releases

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    keys.router,
    keys.me_router,
    datasets.router,
    releases.router,
    jobs.router,
    flows.router,
    memories.router,
    generators.router,
)
