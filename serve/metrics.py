"""Prometheus metrics, one registry per app (so several apps can live in one process, as in the tests)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# The top score of each answer; "not sure" (contract.prediction_log.NOT_SURE_BELOW) is under 0.5: the alert rules
# read the le="0.5" bucket.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.requests = Counter(
            "serve_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency_seconds = Histogram(
            "serve_request_duration_seconds",
            "Time from request to response end",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge("serve_requests_in_progress", "HTTP requests being handled", registry=registry)
        self.decode_seconds = Histogram(
            "serve_decode_duration_seconds",
            "Decoding and resizing one upload",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_seconds = Histogram(
            "serve_inference_duration_seconds",
            "One onnxruntime call (a whole batch)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "serve_batch_size", "Inputs per onnxruntime call", buckets=BATCH_BUCKETS, registry=registry
        )
        self.queue_depth = Gauge(
            "serve_queue_depth",
            "Classify requests holding a queue slot (decoding, waiting or in inference)",
            registry=registry,
        )
        self.model_info = Gauge(
            "serve_model_info", "The loaded model (value 1)", ["name", "version", "quantization"], registry=registry
        )

        self.predictions = Counter(
            "serve_predictions", "Answered classify requests by the label answered", ["label"], registry=registry
        )
        self.confidence = Histogram(
            "serve_prediction_confidence",
            "The top score of each answered classify request",
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.outliers = Counter(
            "serve_prediction_outliers",
            "Answered classify requests flagged as none of the ten classes (a model with an outlier score)",
            registry=registry,
        )
        self.feedback = Counter(
            "serve_feedback", "Feedback received, by what it says of the answer", ["verdict"], registry=registry
        )
        self.shadow_answers = Counter(
            "serve_shadow_answers",
            "Requests offered to the shadow challenger: its label agreed or disagreed with the answer, or was dropped",
            ["outcome"],
            registry=registry,
        )
        self.log_records_dropped = Counter(
            "serve_log_records_dropped",
            "Log records (access log included) dropped because their writer could not keep up (serve/log_queue.py)",
            registry=registry,
        )
        self.prediction_log_dropped = Counter(
            "serve_prediction_log_dropped",
            "Prediction log lines dropped (the writer's queue was full, or the sink failed)",
            registry=registry,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
