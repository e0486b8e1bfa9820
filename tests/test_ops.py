"""foundry.ops against brute-force references: FPS, kNN (chunked too), gather, Chamfer, grouping."""
import numpy as np
import pytest
import torch

from foundry.ops import chamfer_distance, farthest_point_sample, fpsample_available, gather_points, group_patches, knn
from foundry.ops import fps as fps_module


def naive_fps(cloud: np.ndarray, num: int, start: int = 0) -> list[int]:
    """Textbook FPS with explicit loops in float64: next = argmax_j min_{c chosen} |p_j - p_c|^2."""
    chosen = [start]
    for _ in range(num - 1):
        best, best_d = -1, -1.0
        for j in range(len(cloud)):
            d = min(float(((cloud[j] - cloud[c]) ** 2).sum()) for c in chosen)
            if d > best_d:
                best, best_d = j, d
        chosen.append(best)
    return chosen


def rand(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_fps_matches_naive_loop():
    pts = rand((2, 120, 3))
    idx = farthest_point_sample(pts, 12)
    for b in range(2):
        assert idx[b].tolist() == naive_fps(pts[b].double().numpy(), 12)


def test_fps_random_start_is_seeded_and_matches_naive():
    pts = rand((3, 80, 3), seed=1)
    a = farthest_point_sample(pts, 10, start="random", generator=torch.Generator().manual_seed(5))
    b = farthest_point_sample(pts, 10, start="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    for i in range(3):
        assert a[i].tolist() == naive_fps(pts[i].double().numpy(), 10, start=int(a[i, 0]))


def test_fps_fast_cpu_path_is_bit_identical_to_reference_loop():
    """The column-layout CPU FPS must pick exactly what the (B, N, 3) formulation picks."""
    pts = rand((2, 5000, 3), seed=2) * 3.0
    first = torch.tensor([0, 17])

    def reference(points, num, start):
        min_dist = torch.full(points.shape[:2], float("inf"))
        rows, current, out = torch.arange(points.shape[0]), start, []
        for _ in range(num):
            out.append(current)
            dist = (points - points[rows, current].unsqueeze(1)).pow(2).sum(-1)
            min_dist = torch.minimum(min_dist, dist)
            current = min_dist.argmax(1)
        return torch.stack(out, 1)

    assert torch.equal(fps_module._fps_torch_columns(pts, 200, first), reference(pts, 200, first))


@pytest.mark.skipif(not fpsample_available(), reason="optional fpsample backend not installed")
def test_fpsample_backend_parity():
    pts = rand((2, 2000, 3), seed=3)
    a = farthest_point_sample(pts, 64, backend="torch")
    b = farthest_point_sample(pts, 64, backend="fpsample")
    for i in range(2):
        assert int(b[i, 0]) == int(a[i, 0])
        assert set(a[i].tolist()) == set(b[i].tolist())


def test_fps_rejects_bad_input():
    with pytest.raises(ValueError):
        farthest_point_sample(rand((1, 10, 3)), 11)
    with pytest.raises(ValueError):
        farthest_point_sample(rand((1, 10, 2)), 3)


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_knn_matches_full_sort(chunk):
    q, p = rand((2, 33, 3), 4), rand((2, 200, 3), 5)
    got = knn(q, p, 9, chunk_size=chunk)
    full = ((q[:, :, None, :].double() - p[:, None, :, :].double()) ** 2).sum(-1)  # (B, M, N)
    ref = full.argsort(dim=-1)[..., :9]
    assert got.shape == (2, 33, 9)
    assert torch.equal(got, ref)


def test_knn_chunking_by_element_budget_is_exact():
    q, p = rand((1, 50, 3), 6), rand((1, 300, 3), 7)
    assert torch.equal(knn(q, p, 5, max_chunk_elements=300 * 4), knn(q, p, 5))


def test_gather_points_matches_loop():
    values = rand((2, 20, 4), 8)
    index = torch.randint(0, 20, (2, 5, 3), generator=torch.Generator().manual_seed(0))
    out = gather_points(values, index)
    assert out.shape == (2, 5, 3, 4)
    for b in range(2):
        for i in range(5):
            for j in range(3):
                assert torch.equal(out[b, i, j], values[b, index[b, i, j]])


def test_chamfer_hand_computed():
    a = torch.tensor([[[0.0, 0, 0], [1, 0, 0]]])
    b = torch.tensor([[[0.0, 0, 0]]])
    # a->b nearest squared distances [0, 1] (mean 0.5); b->a [0] (mean 0)
    assert chamfer_distance(a, b, norm="l2").item() == pytest.approx(0.5)
    # unsquared distances: a->b [0, 1] mean 0.5, b->a [0]; CD-L1 = (0.5 + 0) / 2
    assert chamfer_distance(a, b, norm="l1").item() == pytest.approx(0.25)
    c = torch.tensor([[[0.0, 3, 4]]])  # distance 5 to the origin
    assert chamfer_distance(b, c, norm="l2").item() == pytest.approx(50.0)
    assert chamfer_distance(b, c, norm="l1").item() == pytest.approx(5.0)


def test_chamfer_matches_brute_force_loops():
    a, b = rand((2, 15, 3), 9), rand((2, 11, 3), 10)
    per_set = chamfer_distance(a, b, norm="l2", reduction="none")
    per_set_l1 = chamfer_distance(a, b, norm="l1", reduction="none")
    for s in range(2):
        ab = [min(float(((x - y) ** 2).sum()) for y in b[s]) for x in a[s]]
        ba = [min(float(((y - x) ** 2).sum()) for x in a[s]) for y in b[s]]
        assert per_set[s].item() == pytest.approx(np.mean(ab) + np.mean(ba), rel=1e-5)
        l1 = (np.mean(np.sqrt(ab)) + np.mean(np.sqrt(ba))) / 2
        assert per_set_l1[s].item() == pytest.approx(l1, rel=1e-5)
    with pytest.raises(ValueError):
        chamfer_distance(a, b, norm="l3")


def test_group_patches_is_fps_then_knn_relative():
    pts = rand((2, 100, 3), 11)
    nbhd, centers = group_patches(pts, 8, 6)
    idx = farthest_point_sample(pts, 8)
    assert torch.equal(centers, gather_points(pts, idx))
    nn_idx = knn(centers, pts, 6)
    assert torch.allclose(nbhd, gather_points(pts, nn_idx) - centers.unsqueeze(2))
    # the nearest neighbour of a centre is the centre itself: its relative point is the origin
    assert torch.allclose(nbhd[:, :, 0], torch.zeros(2, 8, 3))


# -- automatic CPU backends (ops.accel): same indices as the plain torch code ------------------------
needs_fpsample = pytest.mark.skipif(not fpsample_available(), reason="optional fpsample backend not installed")


@needs_fpsample
def test_auto_fps_is_bit_identical_to_plain_even_with_duplicate_points():
    from foundry.ops.accel import plain_grouping

    pts = torch.round(rand((3, 400, 3), seed=7) * 2) / 2  # coarse grid: many equally far points
    fast = farthest_point_sample(pts, 48, start="random", generator=torch.Generator().manual_seed(1))
    with plain_grouping():
        plain = farthest_point_sample(pts, 48, start="random", generator=torch.Generator().manual_seed(1))
    assert torch.equal(fast, plain)
    assert torch.equal(farthest_point_sample(pts, 48, backend="fpsample"), farthest_point_sample(pts, 48, backend="plain"))


@needs_fpsample
def test_bucket_fps_is_exact_fps_from_its_own_first_point():
    pts = rand((2, 3000, 3), seed=8)
    idx = farthest_point_sample(pts, 150, backend="bucket")
    assert torch.equal(idx, fps_module._fps_torch_columns(pts, 150, idx[:, 0].clone()))


def test_knn_kdtree_gives_the_brute_force_neighbour_sets():
    q, p = rand((2, 50, 3), 9), rand((2, 5000, 3), 10)
    tree = knn(q, p, 16, backend="kdtree")
    brute = knn(q, p, 16, backend="plain")
    assert torch.equal(tree, brute)  # random floats: no ties, same order (nearest first)
    assert torch.equal(knn(q, p, 16), tree)  # N >= KDTREE_MIN_POINTS on CPU: the tree is chosen


def test_host_tree_both_trees_give_the_brute_force_neighbours(monkeypatch):
    import numpy as np

    from foundry.ops import host_tree

    rng = np.random.default_rng(3)
    p, q = rng.random((3000, 3)), rng.random((40, 3))
    exact = np.argsort(((q[:, None] - p[None]) ** 2).sum(-1), axis=1)[:, :9]
    got = {}
    if host_tree._pykdtree() is not None:
        before = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            got["pykdtree"] = host_tree.query(p, q, 9)
        finally:
            torch.set_num_threads(before)
    monkeypatch.setattr(host_tree, "_pykdtree", lambda: None)
    got["scipy"] = host_tree.query(p, q, 9)
    for name, (dist, idx) in got.items():
        assert idx.dtype == np.int64 and dist.dtype == np.float64 and idx.shape == (40, 9), name
        assert np.array_equal(idx, exact), name
        assert np.allclose(dist,
                           np.linalg.norm(q[:, None] - p[idx], axis=-1)), name


def test_host_tree_spatially_ordered_queries_give_the_same_answers(monkeypatch):
    """From ORDER_QUERIES_FROM queries on, `query` asks them voxel by voxel: the same arrays back, in
    the caller's order, as the unordered query (a cloud asking its own nearest, a tie-rich grid too)."""
    import numpy as np

    from foundry.ops import host_tree

    rng = np.random.default_rng(5)
    grid = np.stack(np.meshgrid(*[np.arange(12.0)] * 3, indexing="ij"), -1).reshape(-1, 3)  # 1728 tied points
    for p in (rng.random((5000, 3)), grid):
        monkeypatch.setattr(host_tree, "ORDER_QUERIES_FROM", 1 << 30)
        plain = host_tree.query(p, p, 9)
        monkeypatch.setattr(host_tree, "ORDER_QUERIES_FROM", 1)
        ordered = host_tree.query(p, p, 9)
        assert np.array_equal(plain[0], ordered[0]) and np.array_equal(plain[1], ordered[1])
    order = host_tree.spatial_order(grid, cells=4)
    assert sorted(order.tolist()) == list(range(len(grid)))
    cell = (grid[order] // 3).astype(int)  # 4^3 cells of 3^3 grid points: listed cell by cell
    key = (cell[:, 0] * 4 + cell[:, 1]) * 4 + cell[:, 2]
    assert (np.diff(key) >= 0).all()


@pytest.mark.parametrize("tree_from", [256, 1 << 30])
def test_knn_cpu_paths_give_the_top_k_neighbours_of_small_clouds(tree_from, monkeypatch):
    """On CPU the k-d tree (from KDTREE_MIN_POINTS) or, below it, NumPy's selection of the k smallest
    distances: the same indices as torch's top-k, nearest first, on random and on real (tie-rich)
    clouds; NumPy orders ties by index."""
    import importlib

    from foundry.data import load_arrays

    monkeypatch.setattr(importlib.import_module("foundry.ops.knn"), "KDTREE_MIN_POINTS", tree_from)

    real = torch.as_tensor(load_arrays("modelnet10", "test", 1024)["points"][:200]).float()
    for q, p in ((rand((2, 50, 3), 11), rand((2, 1024, 3), 12)), (real[:, :64], real)):
        for k in (1, 16, 32, p.shape[1]):
            fast, plain = knn(q, p, k), knn(q, p, k, backend="plain")
            d = torch.cdist(q.double(), p.double()).gather(-1, fast)
            assert (d[..., 1:] >= d[..., :-1] - 1e-6).all()
            same = (fast.sort(-1).values == plain.sort(-1).values).all(-1)
            assert same.float().mean() > 0.99  # sets differ only where the k-th distance is tied
    x = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [2, 0, 0]]])
    assert knn(x[:, :1], x, 4).tolist() == [[[0, 1, 2, 3]]]


def test_accelerators_step_aside_when_forced_or_traced(monkeypatch):
    from foundry.ops import accel

    t = torch.zeros(1, 3, 3)
    assert accel.accelerated_cpu_allowed(t)
    with accel.plain_grouping():
        assert not accel.accelerated_cpu_allowed(t)
    monkeypatch.setenv("FOUNDRY_GROUPING", "plain")
    assert not accel.accelerated_cpu_allowed(t)
    monkeypatch.delenv("FOUNDRY_GROUPING")
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert not accel.accelerated_cpu_allowed(t)
