"""Default bucket bounds, chosen for AI workloads.

Request durations run from a 5 ms health probe to a 10-minute video generation job, but the
request-duration histogram is the one metric with a series per (method, route, status), so
its buckets are what a route costs: nine bounds, 12 series per (method, route, status) with
``_sum`` and ``_count`` (docs/series-budget.md). They sit exactly on the thresholds inferwatch
alerts on (150/200 ms interactive, 500 ms, 2 s and 5 s), so ``histogram_quantile`` needs no
interpolation where it matters; between them an estimate is only as fine as the bounds. The
last two reach the minutes a music or video generation takes (30 s, 5 min), so its latency
panel is not flattened at a few seconds; a service that needs finer bounds passes its own
``duration_buckets=``.
"""

DURATION_SECONDS = (0.05, 0.15, 0.2, 0.5, 1.0, 2.0, 5.0, 30.0, 300.0)

# Payload sizes: a JSON prompt (~100 B) to a rendered video (~1 GiB), powers of four.
SIZE_BYTES = tuple(float(4**k * 64) for k in range(13))

# WebSocket handshakes and other setup steps: 1 ms to 10 s.
SETUP_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Long-lived sessions (WebSocket streams): 1 s to 2 h.
SESSION_SECONDS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
