"""Small stores written with h5py exactly as docs/STORE.md lays them out (header attrs included), for
testing the figure scripts without the rhead binary."""

import datetime

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def _header(f, stage, schema_version=1, status="complete", cells=None):
    a = f.attrs
    a["schema_version"] = np.int32(schema_version)
    a["stage"] = stage
    a["project"] = "rhead"
    a["project_version"] = "0.1.0"
    a["git_revision"] = "0123456789abcdef0123456789abcdef01234567"
    a["job_file"] = "/tmp/test/jobs/test.ini"
    a["job_text"] = "[job]\nname = test\nstages = generate, score, correlate\n"
    a["created_utc"] = datetime.datetime(2024, 5, 1, 12, 0, 0).strftime("%Y-%m-%dT%H:%M:%SZ")
    a["world_size"] = np.int32(1)
    a["comm_backend"] = "self"
    a["status"] = status
    a["seconds"] = np.float64(1.5)
    if cells is not None:
        a["cells_total"] = np.int64(cells)
        a["cells_resumed"] = np.int64(0)
        a["cells_computed_last_attempt"] = np.int64(cells)
        a["attempts"] = np.int32(1)


def _dims(ds, dims):
    ds.attrs["dims"] = dims
    return ds


def _ranked(mean):
    L, H = mean.shape
    flat = mean.ravel()
    order = np.lexsort((np.arange(flat.size), -flat))
    return np.stack([order // H, order % H], axis=1).astype(np.int32)


def write_score(path, tests, schema_version=1, status="complete", retrieval_threshold=0.1):
    """tests: {model: float array [test, layer, head]} of per-test scores of successful tests."""
    with h5py.File(path, "w") as f:
        _header(f, "score", schema_version, status)
        g_models = f.create_group("models")
        for name, t in tests.items():
            t = np.asarray(t, dtype=np.float64)
            g = g_models.create_group(name)
            g.attrs["source"] = "generate"
            g.attrs["rule"] = "official_steps"
            g.attrs["success_threshold"] = np.float64(50.0)
            g.attrs["retrieval_threshold"] = np.float64(retrieval_threshold)
            g.attrs["n_tests_total"] = np.int64(t.shape[0] + 1)
            g.attrs["n_tests_success"] = np.int64(t.shape[0])
            mean = t.mean(axis=0)
            freq = (t > 0).mean(axis=0)
            ranking = _ranked(mean)
            keep = mean[ranking[:, 0], ranking[:, 1]] > retrieval_threshold
            always = np.argwhere(freq == 1).astype(np.int32).reshape(-1, 2)
            bins = np.array([(mean == 0).sum(), ((mean > 0) & (mean <= 0.1)).sum(),
                             ((mean > 0.1) & (mean <= 0.5)).sum(), (mean > 0.5).sum()], dtype=np.int64)
            _dims(g.create_dataset("test_scores", data=t), "test,layer,head")
            _dims(g.create_dataset("test_cells", data=[f"{name}.n0.L{1000 * (i + 1)}.D50"
                                                        for i in range(t.shape[0])], dtype=STR), "test")
            _dims(g.create_dataset("mean", data=mean), "layer,head")
            _dims(g.create_dataset("frequency", data=freq), "layer,head")
            _dims(g.create_dataset("ranking", data=ranking), "rank,pair")
            _dims(g.create_dataset("retrieval_heads", data=ranking[keep].reshape(-1, 2)), "n,pair")
            _dims(g.create_dataset("always_on_heads", data=always), "n,pair")
            _dims(g.create_dataset("bins", data=bins), "bin")


def write_correlate(path, maps, pairs=(), top_k=5):
    """maps: {model: mean [layer, head]}; pairs: [(a, b, label)]. Different shapes: zero-pad to the
    common grid (the 'common_grid' policy)."""
    names = list(maps)
    n = len(names)
    L = max(m.shape[0] for m in maps.values())
    H = max(m.shape[1] for m in maps.values())

    def padded(m):
        out = np.zeros((L, H))
        out[:m.shape[0], :m.shape[1]] = m
        return out.ravel()

    def rank(v):
        return np.argsort(np.argsort(v, kind="stable"), kind="stable").astype(float)

    pear = np.eye(n)
    spear = np.eye(n)
    jac = np.eye(n)
    mism = np.zeros((n, n), dtype=np.int32)
    for i in range(n):
        for j in range(n):
            x, y = padded(maps[names[i]]), padded(maps[names[j]])
            pear[i, j] = np.corrcoef(x, y)[0, 1]
            spear[i, j] = np.corrcoef(rank(x), rank(y))[0, 1]
            tx, ty = set(np.argsort(-x)[:top_k]), set(np.argsort(-y)[:top_k])
            jac[i, j] = len(tx & ty) / len(tx | ty)
            mism[i, j] = int(maps[names[i]].shape != maps[names[j]].shape)
    with h5py.File(path, "w") as f:
        _header(f, "correlate")
        f.attrs["top_k"] = np.int32(top_k)
        f.attrs["shape_policy"] = "common_grid"
        _dims(f.create_dataset("models", data=names, dtype=STR), "model")
        _dims(f.create_dataset("pearson", data=pear), "model,model")
        _dims(f.create_dataset("spearman", data=spear), "model,model")
        _dims(f.create_dataset("top_k_jaccard", data=jac), "model,model")
        _dims(f.create_dataset("shape_mismatch", data=mism), "model,model")
        gp = f.create_group("pairs")
        for a, b, label in pairs:
            i, j = names.index(a), names.index(b)
            g = gp.create_group(f"{a}__{b}")
            g.attrs["pearson"] = pear[i, j]
            g.attrs["spearman"] = spear[i, j]
            g.attrs["top_k_jaccard"] = jac[i, j]
            g.attrs["shape_mismatch"] = np.int32(mism[i, j])
            g.attrs["label"] = label
    return names, pear, mism


def write_generate(path, cells, models, n_layer=2, n_head=3):
    """cells: [(model, needle, length, depth, rouge1_recall)]; models: {model: family}."""
    with h5py.File(path, "w") as f:
        _header(f, "generate", cells=len(cells))
        gm = f.create_group("models")
        for name, family in models.items():
            g = gm.create_group(name)
            g.attrs["path"] = f"/models/{name}"
            g.attrs["family"] = family
            g.attrs["n_layer"] = np.int32(n_layer)
            g.attrs["n_head"] = np.int32(n_head)
            g.attrs["n_kv_head"] = np.int32(n_head)
            g.attrs["vocab_size"] = np.int32(100)
        gc = f.create_group("cells")
        for model, needle, length, depth, rouge in cells:
            g = gc.create_group(f"{model}.n{needle}.L{length}.D{depth}")
            g.attrs["model"] = model
            g.attrs["needle_index"] = np.int32(needle)
            g.attrs["context_length"] = np.int32(length)
            g.attrs["depth_percent"] = np.float64(depth)
            g.attrs["prompt_tokens"] = np.int32(length - 3)
            g.attrs["needle_begin"] = np.int32(10)
            g.attrs["needle_end"] = np.int32(14)
            g.attrs["rouge1_recall"] = np.float64(rouge)
            g.attrs["prompt_mode"] = "faithful"
            g.attrs["attempt"] = np.int32(0)
            g.attrs["rank"] = np.int32(0)
            g.attrs["complete"] = np.int32(1)
            steps = 4
            _dims(g.create_dataset("needle_ids", data=np.arange(4, dtype=np.int32)), "span")
            _dims(g.create_dataset("generated_ids", data=np.arange(steps, dtype=np.int32)), "step")
            g.create_dataset("response", data="eat a sandwich", dtype=STR)
            _dims(g.create_dataset("capture_argmax",
                                   data=np.zeros((steps, n_layer, n_head), dtype=np.int32)),
                  "step,layer,head")


def sample_tests(n_test, n_layer, n_head, seed=0, hot=()):
    """Random sparse per-test scores: most heads 0, a few small, ``hot`` (layer, head) heads high."""
    rng = np.random.default_rng(seed)
    t = np.where(rng.random((n_test, n_layer, n_head)) < 0.3,
                 rng.random((n_test, n_layer, n_head)) * 0.2, 0.0)
    t[:, 0, 0] = 0.0
    for l, h in hot:
        t[:, l, h] = 0.6 + 0.4 * rng.random(n_test)
    return t
