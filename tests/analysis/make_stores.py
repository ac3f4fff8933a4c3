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


def write_train(path, contexts):
    """train.h5 with what readers use of it: contexts {model: trained context length}."""
    with h5py.File(path, "w") as f:
        _header(f, "train")
        g_models = f.create_group("models")
        for name, context in contexts.items():
            g_models.create_group(name).attrs["context"] = np.int64(context)


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


# ------------------------------------------------------------------------------------------ ablate

ERROR_TYPES = ("correct", "incomplete", "wrong_extraction", "hallucination")


def _row_order(keys, modes):
    """Summary row order of the ablate stage: none/none, then per mode and K: top, rand0, rand1, ..."""
    def key(t):
        mode, sel, k = t
        if mode == "none":
            return (0, 0, 0, 0)
        seed = -1 if sel == "top" else int(sel[4:])
        return (1, modes.index(mode), k, seed)
    return sorted(keys, key=key)


def write_ablate(path, cells, task_cells=(), tracked=None, status="complete", schema_version=2,
                 summary_delta=None):
    """ablate.h5 as docs/STORE.md lays it out, summaries computed from the cells like the stage does.

    cells: dicts with model, mode, selection, k, seed, needle_index, context_length, depth_percent,
    prompt_tokens, needle_begin, needle_end, rouge1_recall, error_type, sink_fraction, response,
    masked_heads [k, 2], top_head_argmax [step, tracked]. task_cells: dicts with model, mode, selection,
    k, seed, task, task_kind, item, f1, exact_match. tracked: {model: int [n, 2]}. As the stage, every
    summary (NIAH and each task) has one row per head selection of the model, with 0 cells and 0.0 where
    none ran (e.g. NIAH rows of a tasks-only model).
    summary_delta: {(model, row, k): added to that row's mean_recall} (for mismatch tests)."""
    tracked = tracked or {}
    models = []
    modes = []
    for c in list(cells) + list(task_cells):
        if c["model"] not in models:
            models.append(c["model"])
        if c["mode"] != "none" and c["mode"] not in modes:
            modes.append(c["mode"])
    with h5py.File(path, "w") as f:
        _header(f, "ablate", schema_version, status, cells=len(cells) + len(task_cells))
        f.attrs["job_text"] = "[job]\nname = test\nstages = score, ablate\n"
        gc = f.create_group("cells")
        for c in cells:
            cid = (f"{c['model']}.{c['mode']}.{c['selection']}.K{c['k']}.n{c['needle_index']}"
                   f".L{c['context_length']}.D{c['depth_percent']}")
            g = gc.create_group(cid)
            for a in ("model", "mode", "selection", "error_type"):
                g.attrs[a] = c[a]
            for a in ("k", "seed", "needle_index", "context_length", "depth_percent", "prompt_tokens",
                      "needle_begin", "needle_end"):
                g.attrs[a] = np.int64(c[a])
            g.attrs["rouge1_recall"] = np.float64(c["rouge1_recall"])
            g.attrs["sink_fraction"] = np.float64(c["sink_fraction"])
            g.attrs["attempt"] = np.int64(0)
            g.attrs["rank"] = np.int64(0)
            g.attrs["complete"] = np.int64(1)
            argmax = np.asarray(c["top_head_argmax"], dtype=np.int32)
            _dims(g.create_dataset("masked_heads", data=np.asarray(c["masked_heads"], dtype=np.int32)
                                   .reshape(-1, 2)), "head,layer_head")
            _dims(g.create_dataset("generated_ids", data=np.arange(argmax.shape[0], dtype=np.int32)), "step")
            g.create_dataset("response", data=c["response"], dtype=STR)
            _dims(g.create_dataset("top_head_argmax", data=argmax), "step,tracked_head")
        for c in task_cells:
            g = gc.create_group(f"{c['model']}.{c['mode']}.{c['selection']}.K{c['k']}.task.{c['task']}"
                                f".i{c['item']}")
            for a in ("model", "mode", "selection", "task", "task_kind"):
                g.attrs[a] = c[a]
            for a in ("k", "seed", "item"):
                g.attrs[a] = np.int64(c[a])
            g.attrs["f1"] = np.float64(c["f1"])
            g.attrs["exact_match"] = np.float64(c["exact_match"])
            g.attrs["prompt_tokens"] = np.int64(40)
            g.attrs["complete"] = np.int64(1)
            _dims(g.create_dataset("masked_heads", data=np.zeros((c["k"], 2), dtype=np.int32)), "head,layer_head")
            _dims(g.create_dataset("generated_ids", data=np.arange(3, dtype=np.int32)), "step")
            g.create_dataset("response", data="The answer is 42.", dtype=STR)
            g.create_dataset("prediction", data="42", dtype=STR)
        gs = f.create_group("summary")
        delta = summary_delta or {}

        def mean(cs, key):
            return sum(c[key] for c in cs) / len(cs) if cs else 0.0   # the stage writes 0 for no cells

        for m in models:
            g = gs.create_group(m)
            heads = np.asarray(tracked.get(m, np.zeros((0, 2))), dtype=np.int32).reshape(-1, 2)
            _dims(g.create_dataset("tracked_heads", data=heads), "tracked_head,layer_head")
            mc = [c for c in cells if c["model"] == m]
            tc = [c for c in task_cells if c["model"] == m]
            # one row per head selection of the model, NIAH and task summaries alike
            order = _row_order({(c["mode"], c["selection"], int(c["k"])) for c in mc + tc}, modes)
            groups = {o: [c for c in mc if (c["mode"], c["selection"], int(c["k"])) == o] for o in order}
            rows = [f"{mode}/{sel}" for mode, sel, _ in order]
            ks = np.array([k for _, _, k in order], dtype=np.int64)
            n = np.array([len(groups[o]) for o in order], dtype=np.int64)
            recall = np.array([mean(groups[o], "rouge1_recall") + delta.get((m, f"{o[0]}/{o[1]}", o[2]), 0.0)
                               for o in order], dtype=np.float64)
            errors = np.array([[sum(1 for c in groups[o] if c["error_type"] == t) for t in ERROR_TYPES]
                               for o in order], dtype=np.int64).reshape(-1, 4)
            _dims(g.create_dataset("rows", data=rows, dtype=STR), "row")
            _dims(g.create_dataset("k", data=ks), "row")
            _dims(g.create_dataset("n_cells", data=n), "row")
            _dims(g.create_dataset("mean_recall", data=recall), "row")
            _dims(g.create_dataset("error_counts", data=errors), "row,error_type")
            g.attrs["error_types"] = ",".join(ERROR_TYPES)
            if not tc:
                continue
            gt = g.create_group("tasks")
            for task in sorted({c["task"] for c in tc}):
                cs = [c for c in tc if c["task"] == task]
                t = gt.create_group(task)
                t.attrs["kind"] = cs[0]["task_kind"]
                tg = {o: [c for c in cs if (c["mode"], c["selection"], int(c["k"])) == o] for o in order}
                _dims(t.create_dataset("rows", data=rows, dtype=STR), "row")
                _dims(t.create_dataset("k", data=ks), "row")
                _dims(t.create_dataset("n_items", data=np.array([len(tg[o]) for o in order], dtype=np.int64)),
                      "row")
                for v in ("f1", "exact_match"):
                    _dims(t.create_dataset(v, data=np.array([mean(tg[o], v) for o in order], dtype=np.float64)),
                          "row")


def sample_ablate(models=(("base", ("uniform", "zero")), ("base-chat", ("uniform",))), ks=(2, 5, 10),
                  seeds=3, lengths=(1000, 2000, 4000, 8000), depths=(0, 50, 100), n_tracked=4, steps=6,
                  task_models=("base-chat",), task_ks=(2, 10), items=4, seed=0):
    """(cells, task_cells, tracked) of a synthetic ablation: masking the top-K heads breaks NIAH more
    with K and length, random heads barely; tasks extractqa (qa), gsm8k_cot / mmlu_cot (cot) and
    gsm8k / mmlu (direct) for task_models."""
    rng = np.random.default_rng(seed)
    cells, task_cells, tracked = [], [], {}
    for m, modes in models:
        tracked[m] = np.array([[i % 3, (2 * i + 1) % 5] for i in range(n_tracked)], dtype=np.int32)
        sels = [("none", "none", 0, -1)]
        for mode in modes:
            for k in ks:
                sels.append((mode, "top", k, -1))
                sels += [(mode, f"rand{s}", k, s) for s in range(seeds)]
        for mode, sel, k, s in sels:
            for L in lengths:
                for D in depths:
                    if sel == "top":
                        recall = 100.0 if D == 100 else max(0.0, 100.0 - 9.0 * k * L / 2000.0)
                    elif sel == "none":
                        recall = 100.0
                    else:
                        recall = float(min(100.0, max(0.0, 100.0 - rng.choice([0, 0, 0, 25, 50]))))
                    recall = round(recall / 25.0) * 25.0
                    if recall >= 100:
                        etype = "correct"
                    elif recall > 0:
                        etype = "incomplete"
                    else:
                        etype = "hallucination" if D == 50 or L == max(lengths) else "wrong_extraction"
                    begin = 10 + int(D / 100.0 * (L - 60))
                    end = begin + 12
                    if etype == "hallucination":
                        argmax = rng.integers(0, 4, (steps, n_tracked))
                    elif etype == "wrong_extraction":
                        argmax = rng.integers(end + 1, L - 3, (steps, n_tracked)) if end + 1 < L - 3 else \
                            rng.integers(4, max(5, begin), (steps, n_tracked))
                    else:
                        argmax = rng.integers(begin, end, (steps, n_tracked))
                        if etype == "incomplete":
                            argmax[steps // 2:, : n_tracked // 2] = 1
                    sink = float((argmax < 4).mean())
                    cells.append({
                        "model": m, "mode": mode, "selection": sel, "k": k, "seed": s, "needle_index": 0,
                        "context_length": L, "depth_percent": D, "prompt_tokens": L - 3,
                        "needle_begin": begin, "needle_end": end, "rouge1_recall": recall,
                        "error_type": etype, "sink_fraction": sink,
                        "response": {"correct": "eat a sandwich and sit in Dolores Park on a sunny day.",
                                     "incomplete": "Go to Dolores Park on a sunny day.",
                                     "wrong_extraction": "The essay says that startups should grow fast.",
                                     "hallucination": "Visit the Golden Gate Bridge and go to the beach."
                                     }[etype],
                        "masked_heads": ([] if sel == "none" else
                                         (tracked[m][:k].tolist() + [[5 + i // 5, i % 5]
                                                                     for i in range(max(0, k - n_tracked))])
                                         if sel == "top" else [[3 + i // 5, i % 5] for i in range(k)]),
                        "top_head_argmax": argmax})
        if m not in task_models:
            continue
        tasks = [("extractqa", "qa", 56.0), ("gsm8k_cot", "cot", 45.0), ("gsm8k", "direct", 4.0),
                 ("mmlu_cot", "cot", 44.0), ("mmlu", "direct", 57.0)]
        for task, kind, level in tasks:
            for mode, sel, k, s in [("none", "none", 0, -1)] + [
                    (mode, x, k, (-1 if x == "top" else int(x[4:])))
                    for mode in modes for k in task_ks for x in ["top"] + [f"rand{i}" for i in range(seeds)]]:
                drop = 0.0 if sel == "none" else (
                    (0.8 if kind != "direct" else 0.05) * level * k / max(task_ks) if sel == "top"
                    else 0.1 * level * k / max(task_ks))
                for item in range(items):
                    em = 100.0 if (item * 37 + k + (s if s > 0 else 0)) % 100 < level - drop else 0.0
                    f1 = min(100.0, max(0.0, level - drop + 10.0 * (item - (items - 1) / 2.0)
                                        + (1.5 * s if sel.startswith("rand") else 0.0)))
                    task_cells.append({"model": m, "mode": mode, "selection": sel, "k": k, "seed": s,
                                       "task": task, "task_kind": kind, "item": item, "f1": f1,
                                       "exact_match": em})
    return cells, task_cells, tracked
