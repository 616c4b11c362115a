"""Real serving frameworks as the service's peers in the load test (`python -m loadtest --targets service,mosec,...`).

Each peer is a small program here that serves the same ONNX file with the service's own decoding, session setup
and answer (serve/core.py), run from its own venv that the load test builds from the program's pinned
requirements (loadtest/peers/venv.py): never the serve image, never the development venv. Nothing is imported here:
the programs import this package in their venv, where only the framework, numpy, Pillow and onnxruntime are.
"""
