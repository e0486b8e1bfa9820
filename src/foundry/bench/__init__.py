"""Cost and speed measurements: `foundry bench`.

- flops.py     MACs and FLOPs per stage (grouping, tokenizer, gate, dso, encoder, cau, other) via the
               formulas of torch.utils.flop_counter (+ CPU flash attention), at a stated batch and size.
- latency.py   warm-up, many timed calls, median and IQR; CUDA synchronised; bf16/fp16 autocast.
- worker.py    one measurement in a fresh process: peak extra resident memory (VmHWM) or CUDA peak
               allocation, a time limit and a memory cap.
- grouping.py  FPS + kNN time per FPS backend and cloud size.
- scaling.py   cost versus input size (G = N/16 patches), teacher versus student, JSON + PNG.
- report.py    several models side by side: one table, one JSON with the settings.
- paired.py    batch-1 latency of several models interleaved in one process: ratios with intervals.
- hooks.py     watches the grouping functions inside any model (for timing and stage attribution).
"""
from .flops import STAGES, count_flops, model_macs, stage_costs

__all__ = ["STAGES", "count_flops", "model_macs", "stage_costs"]
