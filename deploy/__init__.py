"""Deployment: export to ONNX / torch.export / TorchScript, int8 quantization, an HTTP server."""
