"""Patch grouping on the host for exported graphs (`foundry export --grouping host`).

In a graph, FPS is `num_groups` unrolled steps of tiny nodes (about 320 for 64 patches) that
onnxruntime runs one by one: at batch 1 they cost a student more than its encoder. With grouping on
the host the graph starts from the patches (inputs "neighborhoods" (B, G, K, 3) and "centers"
(B, G, 3)) and the host groups with `foundry.ops.group_patches` (on CPU: `fpsample`'s FPS and the
NumPy kNN, the same patches as the model's own grouping). The grouping settings travel in the
graph's metadata (`GROUPING_KEY`), so `onnx_feed` can prepare the inputs of any exported graph
from raw points; latency figures of such graphs include the host grouping.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from ..models.config import default_outlier_filter
from ..ops import group_patches

GROUPING_KEY = "foundry.host_grouping"


def grouping_spec(model) -> dict:
    """What the host needs to group clouds as `model` does (its patch config)."""
    c = model.patch_config
    return {"num_groups": int(c.num_groups), "group_size": int(c.group_size), "fps_start": c.fps_start,
            "outlier_filter": bool(getattr(c, "outlier_filter", default_outlier_filter()))}


def host_patches(points, spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """(neighborhoods (B, G, K, 3), centers (B, G, 3)) float32 arrays of clouds (B, N, 3)."""
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    with torch.inference_mode():
        nbhd, centers = group_patches(pts, spec["num_groups"], spec["group_size"], fps_start=spec["fps_start"],
                                      outlier_filter=spec.get("outlier_filter", False))  # older files: no filter
    return nbhd.numpy(), centers.numpy()


def ort_session(path, threads: int = 1, profile_prefix: str | None = None):
    """An onnxruntime CPU session with a fixed thread count (and the node profiler on when
    `profile_prefix` is given). For a graph that leaves the grouping to the host, with more than one
    thread, the runtime's threads stop spinning at the end of every call (`session.force_spinning_stop`):
    threads left spinning take the cores from the host's grouping between calls, while threads that
    never spin wake up slowly inside a call. Measured here at 2 threads, batch 1, 1,024 points (medians of
    80 calls, host grouping included): the narrow s16 student fp32 7.7-8.0 ms spinning, 5.1-5.3 ms never
    spinning, 3.8-4.0 ms stopping at the end of each call; teacher-vits 32.8-52.1 / 34.2-34.3 / 29.4-31.6 ms.
    Graphs that group themselves run as fast or faster spinning throughout, and keep it."""
    import onnxruntime as ort

    def build(stop_spinning_after_calls: bool):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if stop_spinning_after_calls:
            opts.add_session_config_entry("session.force_spinning_stop", "1")
        if profile_prefix is not None:
            opts.enable_profiling = True
            opts.profile_file_prefix = profile_prefix
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    session = build(stop_spinning_after_calls=False)
    if threads > 1 and session_grouping(session) is not None:
        session = build(stop_spinning_after_calls=True)
    return session


def session_grouping(session) -> dict | None:
    """The host-grouping spec of an onnxruntime session's graph, or None when it groups itself."""
    meta = session.get_modelmeta().custom_metadata_map
    return json.loads(meta[GROUPING_KEY]) if GROUPING_KEY in meta else None


def onnx_feed(session, points, spec: dict | None = None) -> dict:
    """The input dict of `session` for clouds (B, N, 3): the points, or the host's patches of them.
    spec: `session_grouping(session)`, when the caller has looked it up already."""
    spec = session_grouping(session) if spec is None else spec
    points = np.asarray(points, dtype=np.float32)
    if spec is None:
        return {"points": points}
    nbhd, centers = host_patches(points, spec)
    return {"neighborhoods": nbhd, "centers": centers}
