"""Inference without PyTorch: the model exported to ONNX graphs and run by ONNX Runtime.

`export` (torch and the onnx package, once per model) writes the graphs; `frontend` (log-mel
features), `onnx_model` (the graphs' sessions), `search` (beam search) and `recognizer`
(`OnnxRecognizer`, `load_onnx`) read them with numpy and onnxruntime alone, so nothing there
imports torch. Alignment, time stamps and the no-speech measure are shared with the PyTorch path
(asr.decoding.align, asr.decoding.no_speech).
"""
