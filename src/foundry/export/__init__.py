"""ONNX export (grouping in the graph or on the host, dynamic batch), onnxruntime parity, int8: `foundry export`."""
from .host_grouping import host_patches, onnx_feed
from .onnx import check_onnx, export_onnx, extract_features_onnx, quantize_int8, svm_fp32_vs_int8

__all__ = ["export_onnx", "onnx_feed", "host_patches", "check_onnx", "quantize_int8", "extract_features_onnx", "svm_fp32_vs_int8"]
