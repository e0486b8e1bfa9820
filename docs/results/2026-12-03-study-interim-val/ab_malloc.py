# one process: FOUNDRY_MALLOC=default or not decides the allocator; median latency of s16 and teacher
import sys, time, statistics as S, torch, foundry
from foundry.runtime import retain_freed_memory
T = int(sys.argv[1]); torch.set_num_threads(T); took = retain_freed_memory()
x = torch.rand(1, 1024, 3, generator=torch.Generator().manual_seed(0))
out = []
for name in ("foundry-vits-s16", "teacher-vits"):
    m = foundry.load(name).eval()
    with torch.inference_mode():
        for _ in range(10): m(x)
        ts = []
        for _ in range(60 if name.startswith("foundry") else 25):
            t = time.perf_counter(); m(x); ts.append(time.perf_counter() - t)
    out.append(S.median(ts) * 1e3)
print(f"{'retain' if took else 'default'} {T} {out[0]:.3f} {out[1]:.3f} {100 * out[0] / out[1]:.1f}")
