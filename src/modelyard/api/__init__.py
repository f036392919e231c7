"""ASGI assembly: routes, lifespan, and the small raw-ASGI helpers the hot path uses."""
