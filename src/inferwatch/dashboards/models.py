"""Models: loading, what is loaded, inference time by stage, streaming, batching, queueing."""

from __future__ import annotations

from inferwatch.alerts.thresholds import Thresholds
from inferwatch.dashboards import panels as p
from inferwatch.dashboards.model import DashboardSpec, Query
from inferwatch.dashboards.thresholds import steps

UID = "inferwatch-models"
RAW = (p.JOB, p.INSTANCE, p.MODEL)
RECORDED = p.sel(p.JOB, p.MODEL)
LOAD_P95 = "job_model:inferwatch_model_load_duration_seconds:p95_1h"
FAILURES = "job_model:inferwatch_model_load_failures:increase15m"
OVERRIDES = " Levels shown are the thresholds file's defaults; overrides there apply per model."


def build(t: Thresholds) -> DashboardSpec:
    load_failure = p.fault("model_load_failure_rate", 0.5)
    stats = (
        p.stat(
            "Models loaded",
            "Model copies loaded right now, all workers and devices.",
            "short",
            Query(f"sum(inferwatch_model_loaded{p.sel(*RAW)})"),
            width=6,
        ),
        p.stat(
            "Load failures (15m)",
            "Failed model loads over 15 minutes; amber and red at the ModelLoadFailures levels.",
            "short",
            Query(f"sum({FAILURES}{RECORDED})"),
            steps=steps(t, "model_load_failures"),
            width=6,
            needs=load_failure,
        ),
        p.stat(
            "Queued requests",
            "Requests waiting in the inference queue, all priorities.",
            "short",
            Query(f"sum(inferwatch_queue_depth{p.sel(p.JOB, p.INSTANCE)})"),
            width=6,
        ),
        p.stat(
            "Inference in flight",
            "Inference requests running right now.",
            "short",
            Query(f"sum(inferwatch_inference_requests_in_flight{p.sel(*RAW)})"),
            width=6,
        ),
    )
    loading = (
        p.timeseries(
            "Model load time P95 (1h)",
            "P95 time to load and initialize each model over the last hour, successful loads "
            "(recorded: what ModelSlowInitialization reads)." + OVERRIDES,
            "s",
            Query(f"max by (model) ({LOAD_P95}{RECORDED})", "{{model}}"),
            steps=steps(t, "model_load_duration"),
            width=8,
        ),
        p.timeseries(
            "Load time by phase",
            "P95 time per load phase (download, deserialize, to_device, warmup, ...).",
            "s",
            Query(
                p.quantile(
                    "0.95", "inferwatch_model_load_phase_duration_seconds", ("model", "phase"), *RAW
                ),
                "{{model}} {{phase}}",
            ),
            width=8,
        ),
        p.table(
            "Loaded models",
            "Which model versions are loaded on which device, and how many copies.",
            "short",
            Query(
                f"sum by (model, version, device) (inferwatch_model_loaded{p.sel(*RAW)})",
                instant=True,
            ),
            width=8,
        ),
    )
    churn = (
        p.timeseries(
            "Load failures and evictions (15m)",
            "Failed loads by reason (recorded: what ModelLoadFailures reads) and models "
            "unloaded or evicted by reason, each over 15 minutes.",
            "short",
            Query(f"sum by (model, reason) ({FAILURES}{RECORDED})", "failed {{model}} {{reason}}"),
            Query(
                f"sum by (model, reason) (increase(inferwatch_model_unloads_total"
                f"{p.sel(*RAW)}[15m]))",
                "unloaded {{model}} {{reason}}",
            ),
            steps=steps(t, "model_load_failures"),
            needs=load_failure,
        ),
        p.timeseries(
            "Inference requests by outcome",
            "Inference requests per second by outcome (success, timeout, oom, rejected, ...).",
            "reqps",
            Query(
                p.sum_rate("inferwatch_inference_requests_total", ("model", "outcome"), *RAW),
                "{{model}} {{outcome}}",
            ),
        ),
    )
    inference = (
        p.timeseries(
            "Inference time by stage P95",
            "P95 time requests spend in each stage (queue, preprocess, inference, "
            "postprocess, ...): which stage makes generation slow.",
            "s",
            Query(
                p.quantile(
                    "0.95", "inferwatch_inference_stage_duration_seconds", ("model", "stage"), *RAW
                ),
                "{{model}} {{stage}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Time to first chunk",
            "P50 and P95 time from the start of a streamed request to its first output chunk.",
            "s",
            *p.quantile_queries(
                "inferwatch_inference_time_to_first_chunk_seconds",
                ("model",),
                "{{model}}",
                *RAW,
                which=("p50", "p95"),
            ),
            width=8,
        ),
        p.timeseries(
            "Output units per second",
            "What inference produces per second, by unit (tokens, audio_seconds, frames).",
            "short",
            Query(
                p.sum_rate("inferwatch_inference_output_units_total", ("model", "unit"), *RAW),
                "{{model}} {{unit}}",
            ),
            width=8,
        ),
    )
    batching = (
        p.timeseries(
            "Batch size",
            "P50 and P95 requests per batch: small batches on a busy queue waste the GPU.",
            "short",
            *p.quantile_queries(
                "inferwatch_batch_requests", ("model",), "{{model}}", *RAW, which=("p50", "p95")
            ),
            width=6,
        ),
        p.timeseries(
            "Batch fill wait P95",
            "P95 time a batch waited to fill before it ran.",
            "s",
            Query(
                p.quantile("0.95", "inferwatch_batch_wait_seconds", ("model",), *RAW),
                "{{model}}",
            ),
            width=6,
        ),
        p.timeseries(
            "Queue depth by priority",
            "Requests waiting in the inference queue, by priority.",
            "short",
            Query(
                f"sum by (priority) (inferwatch_queue_depth{p.sel(p.JOB, p.INSTANCE)})",
                "{{priority}}",
            ),
            width=6,
        ),
        p.timeseries(
            "Cancellations by stage",
            "Inference requests cancelled per second by the stage they were in; cancelled "
            "while queued means clients gave up waiting.",
            "cps",
            Query(
                p.sum_rate("inferwatch_inference_cancellations_total", ("model", "stage"), *RAW),
                "{{model}} {{stage}}",
            ),
            width=6,
        ),
    )
    return DashboardSpec(
        uid=UID,
        title="inferwatch / Models",
        description="Is the model the bottleneck: loading, stages, batching, queueing, output.",
        variables=(
            p.DATASOURCE,
            p.job_var("inferwatch_inference_requests_total"),
            p.instance_var("inferwatch_inference_requests_total"),
            p.label_var("model", "model", "inferwatch_inference_requests_total", "Model"),
        ),
        rows=(stats, loading, churn, inference, batching, _jobs()),
    )


def _jobs() -> tuple:
    """Jobs made of steps (inferwatch.ai.JobMetrics): how they end, what they leave behind."""
    job = p.sel(p.JOB)
    return (
        p.timeseries(
            "Jobs by outcome",
            "Jobs ending per second by kind and outcome: complete, partial (finished although "
            "some steps failed), failed, cancelled.",
            "ops",
            Query(
                p.sum_rate("inferwatch_jobs_total", ("kind", "outcome"), p.JOB),
                "{{kind}} {{outcome}}",
            ),
            width=8,
        ),
        p.timeseries(
            "Partial or failed jobs",
            "Share of the jobs ended over 5 minutes that were partial or failed, per kind "
            "(the steps that failed: inferwatch_job_steps_total).",
            "percentunit",
            Query(
                f"max by (kind) (job_kind:inferwatch_jobs_incomplete:ratio_rate5m{job})",
                "{{kind}}",
            ),
            max=1,
            width=8,
        ),
        p.timeseries(
            "Memory added per job P95",
            "P95 over an hour of the resident memory a job added to its process, per kind "
            "(inferwatch_job_memory_increase_bytes): jobs run side by side share the figure.",
            "bytes",
            Query(
                f"max by (kind) (job_kind:inferwatch_job_memory_increase_bytes:p95_1h{job})",
                "{{kind}}",
            ),
            width=8,
        ),
    )
