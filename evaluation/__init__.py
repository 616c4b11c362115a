"""Offline evaluation of a model file, torch-free: the robustness benchmark (photo corruptions and the upload path),
the "none of the ten" outlier benchmark, the explanations' faithfulness, and the drift check's detection benchmark.
Export's release gates call it directly (export/benchmark_gates.py); each module is also a command
(`python -m evaluation.robustness MODEL`). It decodes and loads through the service's own code (serve.imaging,
serve.model), never imports train, export or torch."""
