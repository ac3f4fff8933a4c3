"""Unit tests of analysis/ablate_data.py (the numbers of Figures 1, 7-10) on hand-made rows and cells
with hand-computed expected values, and of rhead_stores.read_ablate on small stores (make_stores)."""

import math
import os
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))
sys.path.insert(0, HERE)

import ablate_data as ad  # noqa: E402
import make_stores  # noqa: E402
import rhead_stores  # noqa: E402

NAN = math.nan


class RowLabels(unittest.TestCase):
    def test_split_and_kind(self):
        self.assertEqual(ad.split_row("uniform/rand3"), ("uniform", "rand3"))
        self.assertEqual(ad.selection_kind("rand12"), ("random", 12))
        self.assertEqual(ad.selection_kind("top"), ("top", None))
        self.assertEqual(ad.selection_kind("none"), ("none", None))
        for bad in ("uniform", "/top", "uniform/"):
            with self.assertRaises(ValueError):
                ad.split_row(bad)
        with self.assertRaises(ValueError):
            ad.selection_kind("random")

    def test_masked_modes_first_seen_without_baseline(self):
        self.assertEqual(ad.masked_modes(["none/none", "zero/top", "uniform/top", "zero/rand0"]),
                         ["zero", "uniform"])


class SeriesVsK(unittest.TestCase):
    ROWS = ["none/none", "uniform/top", "uniform/rand0", "uniform/rand1", "uniform/rand2",
            "uniform/top", "uniform/rand0", "uniform/rand1", "zero/top"]
    K = [0, 2, 2, 2, 2, 5, 5, 5, 5]
    V = [90.0, 60.0, 80.0, 86.0, 89.0, 20.0, 70.0, 90.0, 40.0]

    def test_mean_min_max_std_over_seeds_and_baseline_at_k0(self):
        s = ad.series_vs_k(self.ROWS, self.K, self.V)
        self.assertEqual(list(s), ["uniform", "zero"])
        u = s["uniform"]
        np.testing.assert_array_equal(u["ks"], [0, 2, 5])
        np.testing.assert_allclose(u["top"], [90, 60, 20])
        np.testing.assert_allclose(u["rand_mean"], [90, 85, 80])          # (80+86+89)/3, (70+90)/2
        np.testing.assert_allclose(u["rand_min"], [90, 80, 70])
        np.testing.assert_allclose(u["rand_max"], [90, 89, 90])
        # sample std: K2 sqrt((25+1+16)/2) = sqrt(21); K5 sqrt((100+100)/1) = sqrt(200)
        np.testing.assert_allclose(u["rand_std"], [0, math.sqrt(21), math.sqrt(200)])
        np.testing.assert_array_equal(u["rand_n"], [0, 3, 2])
        self.assertEqual(u["baseline"], 90.0)
        z = s["zero"]
        np.testing.assert_array_equal(z["ks"], [0, 5])
        np.testing.assert_allclose(z["top"], [90, 40])
        np.testing.assert_allclose(z["rand_mean"], [90, NAN])
        np.testing.assert_array_equal(z["rand_n"], [0, 0])

    def test_band(self):
        u = ad.series_vs_k(self.ROWS, self.K, self.V)["uniform"]
        lo, hi = ad.band(u, "minmax")
        np.testing.assert_allclose(lo, [90, 80, 70])
        np.testing.assert_allclose(hi, [90, 89, 90])
        lo, hi = ad.band(u, "std")
        np.testing.assert_allclose(lo, [90, 85 - math.sqrt(21), 80 - math.sqrt(200)])
        np.testing.assert_allclose(hi, [90, 85 + math.sqrt(21), 80 + math.sqrt(200)])
        with self.assertRaises(ValueError):
            ad.band(u, "iqr")

    def test_one_draw_has_std_zero_and_no_baseline_no_k0(self):
        s = ad.series_vs_k(["m/top", "m/rand0"], [3, 3], [10.0, 50.0])["m"]
        np.testing.assert_array_equal(s["ks"], [3])
        self.assertEqual(s["rand_std"][0], 0.0)
        self.assertTrue(math.isnan(s["baseline"]))
        self.assertEqual(ad.series_vs_k(["none/none"], [0], [5.0]), {})

    def test_rows_without_cells_are_left_out(self):
        v = ad.with_counts(self.V, [4, 4, 4, 4, 0, 4, 4, 4, 0])   # uniform/rand2 K2 and zero/top K5 empty
        np.testing.assert_array_equal(np.isnan(v), [0, 0, 0, 0, 1, 0, 0, 0, 1])
        s = ad.series_vs_k(self.ROWS, self.K, v)
        self.assertEqual(list(s), ["uniform"])
        np.testing.assert_allclose(s["uniform"]["rand_mean"], [90, 83, 80])    # (80+86)/2
        np.testing.assert_array_equal(s["uniform"]["rand_n"], [0, 2, 2])
        # a tasks-only model: every NIAH row has 0 cells and the stage's 0.0 means
        self.assertEqual(ad.series_vs_k(self.ROWS, self.K, ad.with_counts([0.0] * 9, [0] * 9)), {})
        with self.assertRaises(ValueError):
            ad.with_counts([1.0, 2.0], [1])

    def test_errors(self):
        with self.assertRaises(ValueError):
            ad.series_vs_k(["m/top", "m/top"], [2, 2], [1.0, 2.0])
        with self.assertRaises(ValueError):
            ad.series_vs_k(["m/top"], [2, 3], [1.0])


def cell(cid, model="m", mode="uniform", selection="top", k=5, length=1000, depth=50, recall=0.0,
         etype="hallucination", sink=0.0, needle=0, begin=100):
    return {"id": cid, "model": model, "mode": mode, "selection": selection, "k": k, "needle_index": needle,
            "context_length": length, "depth_percent": depth, "rouge1_recall": recall, "error_type": etype,
            "sink_fraction": sink, "needle_begin": begin, "needle_end": begin + 10}


class SummaryFromCells(unittest.TestCase):
    CELLS = [cell("a", selection="none", mode="none", k=0, recall=100.0),
             cell("b", selection="none", mode="none", k=0, recall=50.0, depth=0),
             cell("c", recall=25.0), cell("d", recall=0.0, depth=0),
             cell("e", selection="rand0", recall=100.0, etype="correct")]

    def test_recomputed_means(self):
        r = ad.rows_from_cells(self.CELLS, "rouge1_recall")
        self.assertEqual(r[("none", "none", 0)], {"n": 2, "mean": 75.0})
        self.assertEqual(r[("uniform", "top", 5)], {"n": 2, "mean": 12.5})
        self.assertEqual(r[("uniform", "rand0", 5)], {"n": 1, "mean": 100.0})
        e = ad.error_counts_from_cells(self.CELLS)
        np.testing.assert_array_equal(e[("uniform", "top", 5)], [0, 0, 0, 2])
        np.testing.assert_array_equal(e[("uniform", "rand0", 5)], [1, 0, 0, 0])

    def test_compare_rows(self):
        r = ad.rows_from_cells(self.CELLS, "rouge1_recall")
        rows, k = ["none/none", "uniform/top", "uniform/rand0"], [0, 5, 5]
        self.assertEqual(ad.compare_rows(rows, k, [2, 2, 1], [75.0, 12.5, 100.0], r), [])
        p = ad.compare_rows(rows, k, [2, 3, 1], [75.0, 13.0, 100.0], r)
        self.assertEqual(len(p), 2)
        self.assertIn("summary counts 3 cells, the store has 2", p[0])
        self.assertIn("summary 13.0000, cells give 12.5000", p[1])
        p = ad.compare_rows(rows[:2] + ["uniform/rand1"], k, None, [75.0, 12.5, 100.0], r)
        self.assertEqual(p, ["row uniform/rand1 K=5: no cells", "cells of uniform/rand0 K=5 have no summary row"])
        # a row that says 0 cells (value 0.0) and has none agrees
        self.assertEqual(ad.compare_rows(rows + ["zero/top"], k + [5], [2, 2, 1, 0], [75.0, 12.5, 100.0, 0.0],
                                         r), [])


class ErrorFractions(unittest.TestCase):
    def test_fractions_with_random_draws_pooled(self):
        rows = ["none/none", "u/top", "u/rand0", "u/rand1", "u/top"]
        k = [0, 5, 5, 5, 9]
        counts = [[4, 0, 0, 0], [1, 1, 0, 2], [2, 0, 1, 1], [3, 1, 0, 0], [0, 0, 0, 0]]
        f = ad.error_fractions(rows, k, counts)["u"]
        np.testing.assert_array_equal(f["ks"], [0, 5])       # the K 9 row has no cells: left out
        np.testing.assert_allclose(f["top"][0], [1, 0, 0, 0])
        np.testing.assert_allclose(f["top"][1], [0.25, 0.25, 0, 0.5])
        np.testing.assert_allclose(f["random"][1], [5 / 8, 1 / 8, 1 / 8, 1 / 8])   # (2+3, 0+1, 1+0, 1+0) / 8
        np.testing.assert_array_equal(f["top_n"], [4, 4])
        np.testing.assert_array_equal(f["random_n"], [4, 8])

    def test_missing_random_draws_give_nan(self):
        f = ad.error_fractions(["u/top", "u/top", "u/rand0"], [2, 5, 5],
                               [[1, 1, 0, 0], [0, 0, 0, 3], [2, 0, 0, 0]])["u"]
        np.testing.assert_array_equal(f["ks"], [2, 5])       # no baseline: no K 0
        self.assertTrue(np.isnan(f["random"][0]).all())
        np.testing.assert_allclose(f["top"], [[0.5, 0.5, 0, 0], [0, 0, 0, 1]])
        np.testing.assert_allclose(f["random"][1], [1, 0, 0, 0])
        self.assertEqual(ad.error_fractions(["none/none", "u/top"], [0, 2], [[0, 0, 0, 0], [0, 0, 0, 0]]), {})


class FailureCase(unittest.TestCase):
    def cells(self):
        return [
            cell("base1", mode="none", selection="none", k=0, recall=100, etype="correct", depth=50),
            cell("base2", mode="none", selection="none", k=0, recall=0, etype="hallucination", depth=0),
            cell("base3", mode="none", selection="none", k=0, recall=100, etype="correct", depth=100),
            cell("A", k=5, depth=50, sink=0.5),                                   # baseline correct
            cell("B", k=2, depth=50, recall=50, etype="incomplete"),               # baseline correct
            cell("C", k=5, depth=0, sink=1.0),                                     # baseline failed
            cell("D", k=10, depth=50, sink=0.9),                                   # baseline correct
            cell("E", k=10, depth=100, recall=100, etype="correct"),               # not a failure
            cell("F", selection="rand0", k=10, depth=50, sink=1.0),                # not top-K
            cell("G", k=5, depth=25, sink=1.0),                                    # no baseline
            cell("H", model="other", k=5, depth=50, sink=1.0),
        ]

    def test_preference_order(self):
        cs = self.cells()
        # baseline correct first, then hallucination over incomplete, then higher sink fraction
        self.assertEqual(ad.pick_failure_case(cs, "m")["id"], "D")
        self.assertEqual(ad.pick_failure_case(cs, "m", k=5)["id"], "A")   # C: baseline failed; G: none
        self.assertEqual(ad.pick_failure_case(cs, "m", k=2)["id"], "B")
        self.assertIsNone(ad.pick_failure_case(cs, "m", k=7))
        self.assertIsNone(ad.pick_failure_case(cs, "m", mode="zero"))
        self.assertEqual(ad.pick_failure_case(cs, "other")["id"], "H")   # no baseline at all: still a case
        cs = [c for c in cs if c["id"] not in ("A", "B", "D")]
        self.assertEqual(ad.pick_failure_case(cs, "m")["id"], "C")       # a failed baseline beats none

    def test_ties_prefer_smaller_k_then_needle_far_from_start(self):
        cs = [cell("b", mode="none", selection="none", k=0, recall=100, etype="correct"),
              cell("x", k=5, sink=1.0, begin=10), cell("y", k=5, sink=1.0, begin=900),
              cell("z", k=2, sink=1.0, begin=5)]
        self.assertEqual(ad.pick_failure_case(cs)["id"], "z")
        self.assertEqual(ad.pick_failure_case(cs[:3])["id"], "y")

    def test_failed_without_error_type_uses_recall(self):
        c = cell("a", recall=99.0)
        del c["error_type"]
        self.assertTrue(ad.failed(c))
        c["rouge1_recall"] = 100.0
        self.assertFalse(ad.failed(c))

    def test_unmasked_counterpart(self):
        cs = self.cells()
        self.assertEqual(ad.unmasked_counterpart(cs, cs[3])["id"], "base1")
        self.assertIsNone(ad.unmasked_counterpart(cs, cs[9]))
        other_needle = dict(cs[3], needle_index=1)
        self.assertIsNone(ad.unmasked_counterpart(cs, other_needle))


class ArgmaxRegions(unittest.TestCase):
    def test_counts_per_step(self):
        a = np.array([[0, 1, 2], [10, 14, 99], [15, 4, 3]])
        np.testing.assert_array_equal(ad.argmax_regions(a, 10, 15), [[0, 3, 0], [2, 0, 1], [0, 1, 2]])

    def test_needle_not_found_and_needle_inside_the_sink(self):
        a = np.array([[0, 2, 3, 4]])
        np.testing.assert_array_equal(ad.argmax_regions(a, -1, -1), [[0, 3, 1]])
        np.testing.assert_array_equal(ad.argmax_regions(a, 2, 5), [[3, 1, 0]])   # the span wins
        np.testing.assert_array_equal(ad.argmax_regions(np.zeros((0, 2)), 1, 2).shape, (0, 3))
        with self.assertRaises(ValueError):
            ad.argmax_regions(np.zeros(3), 1, 2)

    def test_masked_heads_are_left_out(self):
        # Heads 1 and 3 masked: their argmax 0 is the uniform mask's tie rule, not a look at the sink.
        a = np.array([[12, 0, 2, 0], [30, 0, 11, 0]])
        keep = [True, False, True, False]
        np.testing.assert_array_equal(ad.argmax_regions(a, 10, 15, keep=keep), [[1, 1, 0], [1, 0, 1]])
        np.testing.assert_array_equal(ad.argmax_regions(a, 10, 15, keep=[False] * 4), [[0, 0, 0], [0, 0, 0]])
        with self.assertRaises(ValueError):
            ad.argmax_regions(a, 10, 15, keep=[True, False])


class HeatmapCells(unittest.TestCase):
    CELLS = [cell("n", mode="none", selection="none", k=0), cell("t5", k=5), cell("t10", k=10),
             cell("r0", selection="rand0", k=5), cell("r1", selection="rand1", k=5),
             cell("z", mode="zero", k=20), cell("o", model="other", k=5)]

    def test_select_cells(self):
        ids = lambda cs: [c["id"] for c in cs]  # noqa: E731
        self.assertEqual(ids(ad.select_cells(self.CELLS, "m", "none")), ["n"])
        self.assertEqual(ids(ad.select_cells(self.CELLS, "m", "top", 5)), ["t5"])
        self.assertEqual(ids(ad.select_cells(self.CELLS, "m", "random", 5)), ["r0", "r1"])
        self.assertEqual(ids(ad.select_cells(self.CELLS, "m", "random", 5, seed=1)), ["r1"])
        self.assertEqual(ids(ad.select_cells(self.CELLS, "m", "top", 20, mode="uniform")), [])

    def test_masked_ks_and_default_k(self):
        self.assertEqual(ad.masked_ks(self.CELLS, "m"), {"top": [5, 10, 20], "random": [5]})
        self.assertEqual(ad.masked_ks(self.CELLS, "m", "zero"), {"top": [20], "random": []})
        self.assertEqual(ad.default_k([5, 10, 20], [5]), 5)     # largest K with both
        self.assertEqual(ad.default_k([2, 30], []), 30)         # else the largest top K
        self.assertIsNone(ad.default_k([], []))


class Tasks(unittest.TestCase):
    def test_tasks_by_kind(self):
        g = ad.tasks_by_kind({"b": "cot", "a": "cot", "q": "qa", "d": "direct", "x": "other"})
        self.assertEqual(list(g), ["qa", "cot", "direct", "other"])
        self.assertEqual(g, {"qa": ["q"], "cot": ["a", "b"], "direct": ["d"], "other": ["x"]})
        self.assertEqual(ad.tasks_by_kind({}), {})

    def test_task_base(self):
        for name, base in (("gsm8k_cot", "gsm8k"), ("cot-gsm8k", "gsm8k"), ("mmlu.cot.v2", "mmlu.v2"),
                           ("musique_direct", "musique"), ("arc_answer_only", "arc"), ("cotton", "cotton"),
                           ("mmlu", "mmlu"), ("cot", "cot")):
            self.assertEqual(ad.task_base(name), base, name)

    def test_pair_cot_tasks(self):
        kinds = {"gsm8k_cot": "cot", "gsm8k": "direct", "mmlu-cot": "cot", "mmlu_direct": "direct",
                 "musique_cot": "cot", "extract": "qa", "cot_arc": "cot", "arc_answer_only": "direct",
                 "lone": "direct"}
        self.assertEqual(ad.pair_cot_tasks(kinds), [
            ("arc", "cot_arc", "arc_answer_only"), ("gsm8k", "gsm8k_cot", "gsm8k"),
            ("lone", None, "lone"), ("mmlu", "mmlu-cot", "mmlu_direct"), ("musique", "musique_cot", None)])

    def test_pairing_never_guesses_between_same_base_tasks(self):
        kinds = {"gsm8k_cot": "cot", "cot_gsm8k": "cot", "gsm8k": "direct"}
        self.assertEqual(ad.pair_cot_tasks(kinds), [("cot_gsm8k", "cot_gsm8k", None), ("gsm8k", None, "gsm8k"),
                                                    ("gsm8k_cot", "gsm8k_cot", None)])


class AblateReader(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "ablate.h5")

    def tearDown(self):
        self.tmp.cleanup()

    def test_round_trip_summaries_agree_with_cells(self):
        cells, tasks, tracked = make_stores.sample_ablate(ks=(2, 5), seeds=2, lengths=(1000, 2000),
                                                          depths=(0, 100), items=3)
        make_stores.write_ablate(self.path, cells, tasks, tracked)
        a = rhead_stores.read_ablate(self.path)
        self.assertEqual(list(a.summaries), ["base", "base-chat"])
        self.assertEqual(len(a.cells), len(cells))
        self.assertEqual(len(a.task_cells), len(tasks))
        self.assertTrue(a.has_tasks)
        s = a.summaries["base"]
        self.assertEqual(s.rows[:4], ["none/none", "uniform/top", "uniform/rand0", "uniform/rand1"])
        self.assertEqual(s.error_types, list(ad.ERROR_TYPES))
        np.testing.assert_array_equal(s.tracked_heads, tracked["base"])
        self.assertEqual(s.tasks, {})
        base_cells = [c for c in a.cells if c["model"] == "base"]
        self.assertEqual(ad.compare_rows(s.rows, s.k, s.n_cells, s.mean_recall,
                                         ad.rows_from_cells(base_cells, "rouge1_recall")), [])
        errs = ad.error_counts_from_cells(base_cells)
        for r, kk, e in zip(s.rows, s.k, s.error_counts):
            np.testing.assert_array_equal(e, errs[(*ad.split_row(r), int(kk))])
        t = a.summaries["base-chat"].tasks
        self.assertEqual({n: x.kind for n, x in t.items()},
                         {"extractqa": "qa", "gsm8k_cot": "cot", "gsm8k": "direct", "mmlu_cot": "cot",
                          "mmlu": "direct"})
        q = t["extractqa"]
        qc = [c for c in a.task_cells if c["task"] == "extractqa"]
        for metric in ("f1", "exact_match"):
            self.assertEqual(ad.compare_rows(q.rows, q.k, q.n_items, getattr(q, metric),
                                             ad.rows_from_cells(qc, metric)), [])
        one = next(c for c in cells if c["selection"] == "top" and c["k"] == 5)
        cid = f"base.{one['mode']}.top.K5.n0.L{one['context_length']}.D{one['depth_percent']}"
        c = rhead_stores.read_ablate_cell(self.path, cid)
        self.assertEqual(c["top_head_argmax"].shape, (6, 4))
        self.assertEqual(c["masked_heads"].shape, (5, 2))
        self.assertIsInstance(c["response"], str)
        with self.assertRaisesRegex(rhead_stores.StoreError, "no cell /cells/absent"):
            rhead_stores.read_ablate_cell(self.path, "absent")

    def test_tasks_only_model_has_empty_niah_rows(self):
        _, tasks, tracked = make_stores.sample_ablate(models=(("t", ("uniform",)),), ks=(2,), seeds=1,
                                                      task_models=("t",), task_ks=(2,), items=2)
        make_stores.write_ablate(self.path, [], tasks, tracked)
        a = rhead_stores.read_ablate(self.path)
        self.assertEqual(a.cells, [])
        s = a.summaries["t"]
        self.assertEqual(s.rows, ["none/none", "uniform/top", "uniform/rand0"])
        np.testing.assert_array_equal(s.n_cells, [0, 0, 0])
        self.assertEqual(ad.compare_rows(s.rows, s.k, s.n_cells, s.mean_recall,
                                         ad.rows_from_cells(a.cells, "rouge1_recall")), [])
        self.assertEqual(ad.series_vs_k(s.rows, s.k, ad.with_counts(s.mean_recall, s.n_cells)), {})
        q = s.tasks["extractqa"]
        self.assertEqual(q.rows, s.rows)
        np.testing.assert_array_equal(q.n_items, [2, 2, 2])

    def test_no_tasks_newer_schema_and_mismatch(self):
        cells, _, tracked = make_stores.sample_ablate(models=(("m", ("uniform",)),), ks=(2,), seeds=1,
                                                      lengths=(1000,), depths=(0, 50))
        make_stores.write_ablate(self.path, cells, (), tracked, summary_delta={("m", "uniform/top", 2): 1.5})
        a = rhead_stores.read_ablate(self.path)
        self.assertFalse(a.has_tasks)
        s = a.summaries["m"]
        diff = ad.compare_rows(s.rows, s.k, s.n_cells, s.mean_recall, ad.rows_from_cells(a.cells, "rouge1_recall"))
        self.assertEqual(len(diff), 1)
        self.assertIn("uniform/top K=2", diff[0])
        newer = os.path.join(self.tmp.name, "newer.h5")
        make_stores.write_ablate(newer, cells, (), tracked, schema_version=3)
        with self.assertRaisesRegex(rhead_stores.StoreError, "newer.h5.*schema_version 3"):
            rhead_stores.read_ablate(newer)


if __name__ == "__main__":
    unittest.main()
