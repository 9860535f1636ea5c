"""A small FastAPI service that behaves like an audio/music/video generation backend.

It exists to exercise inferwatch end to end (``inferwatch demo``, the tests, the dashboards):
variable latencies, a job API, a streamed response, a WebSocket stream, a background task and
faults that can be switched on at run time. It is an example, not part of the library API.
"""

from inferwatch.demo.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
