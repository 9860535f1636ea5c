"""The model service the demo depends on: a stand-in for a hosted TTS and LLM API, run as a
process of its own, whose failures are switched at run time.

Endpoints: ``POST /v1/speech`` (text in, WAV out), ``POST /v1/completions`` (prompt in, text
out), ``GET/PUT/DELETE /admin/faults`` with ``failure_rate`` (each model call answers 503
with this probability: a transient failure a retry may overcome), ``outage`` (every model
call answers 503 until it is switched off) and ``latency_seconds``; ``GET /admin/served``
counts the model calls it answered by status, the server-side truth to compare the client's
metrics with. Its own HTTP metrics are at ``/metrics``.

Run: ``python -m inferwatch.demo.upstream --port 8100`` (or ``--fd N``: serve on an already
bound socket, which is how :class:`UpstreamProcess` starts one for the demo).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from inferwatch.demo.generation import wav
from inferwatch.metrics.multiprocess import ENV_VAR as MULTIPROC_ENV

SPEECH_SECONDS_PER_CHAR = 0.06  # how long the spoken text lasts
UNAVAILABLE = 503


class UpstreamFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_rate: float = Field(0.0, ge=0.0, le=1.0)
    outage: bool = False
    latency_seconds: float = Field(0.0, ge=0.0, le=60.0)


class UpstreamFaultUpdate(BaseModel):
    """A ``PUT /admin/faults`` body: fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    failure_rate: float | None = Field(None, ge=0.0, le=1.0)
    outage: bool | None = None
    latency_seconds: float | None = Field(None, ge=0.0, le=60.0)


class SpeechRequest(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    voice: str = Field("default", min_length=1, max_length=64)


class CompletionRequest(BaseModel):
    prompt: str = Field(min_length=1, max_length=8000)
    max_tokens: int = Field(64, ge=1, le=4096)


def create_upstream_app(*, seed: int | None = None, time_scale: float = 1.0) -> Any:
    """The upstream service; ``time_scale`` multiplies its simulated work."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import Response
    from prometheus_client.registry import CollectorRegistry

    from inferwatch.http import instrument_app

    rng = random.Random(seed)
    state: dict[str, Any] = {"faults": UpstreamFaults(), "served": Counter()}
    app = FastAPI(title="inferwatch demo upstream (TTS and LLM)")

    async def model_call(work_seconds: float) -> None:
        faults: UpstreamFaults = state["faults"]
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        if faults.outage or (faults.failure_rate > 0 and rng.random() < faults.failure_rate):
            state["served"][str(UNAVAILABLE)] += 1
            raise HTTPException(UNAVAILABLE, "model service unavailable (injected)")
        await asyncio.sleep(work_seconds * time_scale)
        state["served"]["200"] += 1

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/speech", response_class=Response)
    async def speech(request: SpeechRequest) -> Response:
        await model_call(0.05 + 0.002 * len(request.text))
        seconds = min(30.0, len(request.text) * SPEECH_SECONDS_PER_CHAR)
        return Response(wav(request.text, seconds), media_type="audio/wav")

    @app.post("/v1/completions")
    async def completions(request: CompletionRequest) -> dict[str, Any]:
        await model_call(0.02 + 0.001 * request.max_tokens)
        words = request.prompt.split()[: request.max_tokens]
        return {"text": " ".join(reversed(words)), "tokens": len(words)}

    @app.get("/admin/faults")
    async def get_faults() -> UpstreamFaults:
        return state["faults"]

    @app.put("/admin/faults")
    async def put_faults(change: UpstreamFaultUpdate) -> UpstreamFaults:
        merged = state["faults"].model_copy(update=change.model_dump(exclude_none=True))
        state["faults"] = UpstreamFaults.model_validate(merged.model_dump())
        return state["faults"]

    @app.delete("/admin/faults")
    async def reset_faults() -> UpstreamFaults:
        state["faults"] = UpstreamFaults()
        return state["faults"]

    @app.get("/admin/served")
    async def served() -> dict[str, int]:
        return dict(state["served"])

    instrument_app(app, registry=CollectorRegistry())
    return app


class UpstreamProcess:
    """An upstream service in a child process on a free loopback port, stopped with
    :meth:`stop` (and, on Linux, when this process dies)."""

    def __init__(self, *, seed: int | None = None, time_scale: float = 1.0) -> None:
        self._seed = seed
        self._time_scale = time_scale
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> str:
        from inferwatch.stack.children import spawn, with_lifeline

        # Bound here and handed over, so the port is known before the child runs and no other
        # process can take it in between.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        with sock:
            command = [sys.executable, "-m", "inferwatch.demo.upstream", "--fd", str(sock.fileno())]
            command += ["--time-scale", repr(self._time_scale)]
            if self._seed is not None:
                command += ["--seed", str(self._seed)]
            # Not the demo's multiprocess directory: the service's metrics are its own, and
            # written there they would be merged into the demo's scrape.
            env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
            self._process = spawn(
                with_lifeline(command),
                env=env,
                pass_fds=(sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._wait_ready(timeout)
        return self.url

    def _wait_ready(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"the upstream service exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the upstream service did not answer within {timeout:g} s")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> UpstreamProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inferwatch.demo.upstream", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--fd", type=int, help="serve on this already bound socket")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--time-scale", type=float, default=1.0)
    args = parser.parse_args(argv)
    import uvicorn

    app = create_upstream_app(seed=args.seed, time_scale=args.time_scale)
    if args.fd is not None:
        config = uvicorn.Config(app, fd=args.fd, log_level="warning", access_log=False)
    else:
        config = uvicorn.Config(
            app, host=args.host, port=args.port, log_level="warning", access_log=False
        )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
