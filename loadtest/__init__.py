"""Load test and benchmarks of the service (`python -m loadtest`): the service against a naive PyTorch server and a
no-op endpoint, the model alone (onnxruntime int8 vs PyTorch eager), a saturation soak and a SIGTERM check.
127.0.0.1 only; writes JSON, a Markdown table and a latency-vs-throughput plot."""
