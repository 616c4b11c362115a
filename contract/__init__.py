"""The one contract between the pipeline's stages, torch-free (stdlib + numpy at most).

The ONNX file is what training hands to serving; `contract` owns its tensor names and layout, its metadata keys and
their encoding, and the places in the repository where stages hand files to each other. export writes through it;
serve, loadtest, monitor and the tests read through it. Nothing else spells these facts.
"""
