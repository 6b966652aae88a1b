"""Inference without PyTorch: the model exported to ONNX graphs and run by ONNX Runtime.

`export` (needs torch and the `onnx` package) writes the graphs; `frontend` and `onnx_model` read
them with numpy and onnxruntime alone, so nothing here imports torch at inference.
"""
