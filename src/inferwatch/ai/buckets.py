"""Bucket bounds for the AI workload metrics.

Model loads span a cached 100 ms warm start to a 30-minute download of a large checkpoint;
inference spans a 5 ms embedding to a 30-minute video render. Bounds sit on round numbers an
operator would put in an SLO (1 s, 5 s, 30 s, 5 min), so ``histogram_quantile`` needs no
interpolation there.
"""

MODEL_LOAD_SECONDS = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
    120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0,
)  # fmt: skip

# Whole requests and their stages (queue, preprocess, inference, postprocess).
INFERENCE_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
)  # fmt: skip

# Time to first chunk: what a listener waits before playback starts; tight below 1 s.
FIRST_CHUNK_SECONDS = (
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip

# Batch sizes: powers of two, as batchers and GPU kernels are usually configured.
BATCH_SIZE = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0)

# How long a batcher held the first request while it waited for more: 0.5 ms to 5 s.
BATCH_WAIT_SECONDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip

# The cost of a cache miss: computing the value again, 1 ms to 5 min.
CACHE_LOAD_SECONDS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

# How long a dependency stayed broken, as its circuit breaker saw it: from the breaker opening
# to it closing again. Breakers probe every few seconds to a minute; outages last up to hours.
CIRCUIT_RECOVERY_SECONDS = (
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip
