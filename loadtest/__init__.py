"""Load test and benchmarks of the service (`python -m loadtest`): the service against a naive PyTorch server, a
no-op endpoint and, on request, real serving frameworks (loadtest/peers/), the model alone (onnxruntime int8 vs
PyTorch eager), a saturation soak and a SIGTERM check. 127.0.0.1 only; writes JSON, a Markdown table and a
latency-vs-throughput plot."""
