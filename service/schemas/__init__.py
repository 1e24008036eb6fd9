"""Pydantic request/response models, one module per resource, mirroring API.md."""
