"""Argument types shared by the subcommands, so every command rejects bad input alike."""

from __future__ import annotations

import argparse
import math

from inferwatch.config import check_backend_url, check_port

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def port(text: str) -> int:
    """A ``--port``: 0..65535 (see :func:`inferwatch.config.check_port`), 0 for any."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not an integer") from None
    try:
        return check_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid port {value}: {exc}") from None


def backend_url(args: argparse.Namespace, backend: str) -> str | None:
    """``--BACKEND-url``, or the URL in the secret file ``--BACKEND-url-file`` names,
    checked as everywhere (:func:`inferwatch.config.check_backend_url`); a ValueError names
    the flag and never shows a password."""
    from inferwatch.exposition.auth import read_secret_file

    path = getattr(args, f"{backend}_url_file", None)
    if path is None:
        url: str | None = getattr(args, f"{backend}_url", None)
        return None if url is None else check_backend_url(backend, url, f"--{backend}-url")
    flag = f"--{backend}-url-file"
    try:
        return check_backend_url(backend, read_secret_file(path, "the URL"))
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
