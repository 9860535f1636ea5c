"""A small FastAPI service that behaves like an audio/music/video generation backend.

It exists to exercise inferwatch end to end (``inferwatch demo``, the tests, the dashboards):
variable latencies, a job API, a streamed response, a WebSocket stream, a background task and
faults that can be switched on at run time. Behind the endpoints sit fake models that load and
unload (:mod:`.models`), a priority queue with batching (:mod:`.scheduler`), a prompt cache in
memory or Redis (:mod:`.cache`) and a table in SQLite or PostgreSQL (:mod:`.database`). It is
an example, not part of the library API.
"""

from inferwatch.demo.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
