import sys, time, statistics as S, torch, foundry
T = int(sys.argv[1]); torch.set_num_threads(T)
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
print(f"{T} {out[0]:.3f} {out[1]:.3f}")
