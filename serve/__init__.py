"""The torch-free inference service: Starlette + onnxruntime, configured from environment variables.

Run it with `python -m serve`; build it in code with `serve.app.create_app(serve.settings.Settings.from_env())`.
It reads everything about the model from the ONNX file (the contract in docs/design.md, spelled in contract/) and
never imports train/ or export/.
"""
