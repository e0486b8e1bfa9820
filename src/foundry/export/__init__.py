"""ONNX export (grouping included, dynamic batch and points), onnxruntime parity, int8: `foundry export`."""
from .onnx import check_onnx, export_onnx, extract_features_onnx, quantize_int8, svm_fp32_vs_int8

__all__ = ["export_onnx", "check_onnx", "quantize_int8", "extract_features_onnx", "svm_fp32_vs_int8"]
