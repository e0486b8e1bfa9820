import time, torch, foundry
from foundry.models import tokenizer as T
import sys; torch.set_num_threads(int(sys.argv[1]))
new_f = T.PointNetPatchEmbed._embed_folded
from plain_tokenizer import old  # noqa: E402
cloud = torch.rand(32, 1024, 3) - 0.5
for name in ["teacher-vits", "foundry-vits-s16"]:
    m = foundry.load(name).eval()
    for bs, reps in ((32, 5), (1, 30)):
        ts = {"old": [], "new": []}
        xs = cloud[:bs]
        with torch.inference_mode():
            for rep in range(reps):
                for lab, f in (("old", old), ("new", new_f)):
                    T.PointNetPatchEmbed._embed_folded = f
                    t = time.perf_counter(); m.forward_features(xs); ts[lab].append(time.perf_counter() - t)
        med = {k: sorted(v)[len(v)//2] * 1e3 for k, v in ts.items()}
        print(f"threads {sys.argv[1]} {name} batch {bs}: old {med['old']:.1f} ms new {med['new']:.1f} ms ({med['new']/med['old']:.2f})", flush=True)
T.PointNetPatchEmbed._embed_folded = new_f
