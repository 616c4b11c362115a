"""Export: a training checkpoint -> a self-describing ONNX file, its parity check, int8 quantization, model card."""
