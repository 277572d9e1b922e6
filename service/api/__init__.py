"""HTTP API: thin routers over the domain layer."""

from .app import create_app

__all__ = ["create_app"]
