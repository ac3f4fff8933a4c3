"""Unit tests of analysis/figure_data.py and analysis/rhead_stores.py on hand-made arrays and stores."""

import os
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))
sys.path.insert(0, HERE)

import figure_data as fd  # noqa: E402
import make_stores  # noqa: E402
import rhead_stores  # noqa: E402


class Bins(unittest.TestCase):
    def test_edges_belong_to_the_lower_bin(self):
        mean = np.array([[0.0, 1e-12, 0.1, 0.1 + 1e-12],
                         [0.5, 0.5 + 1e-12, 1.0, 0.05]])
        np.testing.assert_array_equal(fd.bin_classes(mean), [[0, 1, 1, 2], [2, 3, 3, 1]])
        np.testing.assert_array_equal(fd.bin_counts(mean), [1, 3, 2, 2])

    def test_percentages(self):
        np.testing.assert_allclose(fd.bin_percentages([702, 266, 26, 6]), [70.2, 26.6, 2.6, 0.6])
        self.assertAlmostEqual(float(fd.bin_percentages([1, 2, 3, 4]).sum()), 100.0)
        with self.assertRaises(ValueError):
            fd.bin_percentages([0, 0, 0, 0])

    def test_nan_is_an_error(self):
        with self.assertRaises(ValueError):
            fd.bin_classes(np.array([[np.nan]]))

    def test_retrieval_fraction_is_strictly_above(self):
        mean = np.array([[0.1, 0.11], [0.0, 0.9]])
        self.assertEqual(fd.retrieval_fraction(mean), (2, 50.0))


class Frequency(unittest.TestCase):
    def test_ranking_descending_with_layer_head_ties(self):
        mean = np.array([[0.2, 0.5], [0.5, 0.0], [0.2, 0.9]])
        np.testing.assert_array_equal(fd.ranking(mean),
                                      [[2, 1], [0, 1], [1, 0], [0, 0], [2, 0], [1, 1]])

    def test_frequency_from_tests(self):
        t = np.zeros((4, 1, 3))
        t[:, 0, 0] = [0.5, 0.1, 0.2, 0.3]   # always on
        t[:2, 0, 1] = 1.0                   # half the tests
        np.testing.assert_allclose(fd.frequency_from_tests(t), [[1.0, 0.5, 0.0]])

    def test_series_sorted_by_score_top_n_and_always_on(self):
        mean = np.array([[0.1, 0.8, 0.0], [0.3, 0.05, 0.0]])
        freq = np.array([[1.0, 1.0, 0.0], [0.9, 1.0, 0.0]])
        s = fd.frequency_series(mean, freq, top_n=3)
        np.testing.assert_array_equal(s["heads"], [[0, 1], [1, 0], [0, 0]])
        np.testing.assert_allclose(s["score"], [0.8, 0.3, 0.1])
        np.testing.assert_allclose(s["frequency"], [1.0, 0.9, 1.0])
        np.testing.assert_array_equal(s["always_on"], [True, False, True])
        self.assertEqual(s["always_on_total"], 3)   # 1-1 is always on but outside the top 3
        self.assertEqual(len(fd.frequency_series(mean, freq, top_n=0)["score"]), 6)
        with self.assertRaises(ValueError):
            fd.frequency_series(mean, freq[:, :2])

    def test_head_label(self):
        self.assertEqual(fd.head_label(16, 19), "16-19")


class Correlation(unittest.TestCase):
    def test_pearson_flat_matches_numpy(self):
        rng = np.random.default_rng(3)
        a, b = rng.random((4, 5)), rng.random((4, 5))
        self.assertAlmostEqual(fd.pearson_flat(a, b), np.corrcoef(a.ravel(), b.ravel())[0, 1])
        self.assertTrue(np.isnan(fd.pearson_flat(np.zeros((2, 2)), b[:2, :2])))
        with self.assertRaises(ValueError):
            fd.pearson_flat(a, b[:, :4])

    def test_pearson_matrix_marks_shape_mismatch(self):
        a = np.array([[0.0, 1.0], [0.5, 0.2]])
        names, mat, mism = fd.pearson_matrix({"a": a, "b": 2 * a + 1, "c": np.zeros((3, 2))})
        self.assertEqual(names, ["a", "b", "c"])
        self.assertAlmostEqual(mat[0, 1], 1.0)
        self.assertTrue(np.isnan(mat[0, 2]))
        np.testing.assert_array_equal(mism, [[0, 0, 1], [0, 0, 1], [1, 1, 0]])

    def test_select_matrix_reorders_and_subsets(self):
        m = np.array([[1.0, 0.2, 0.3], [0.2, 1.0, 0.4], [0.3, 0.4, 1.0]])
        names, sub = fd.select_matrix(["a", "b", "c"], m, ["c", "a", "zz"])
        self.assertEqual(names, ["c", "a"])
        np.testing.assert_allclose(sub, [[1.0, 0.3], [0.3, 1.0]])
        names, same = fd.select_matrix(["a", "b", "c"], m)
        np.testing.assert_allclose(same, m)
        with self.assertRaises(ValueError):
            fd.select_matrix(["a", "b"], m)

    def test_matrix_from_pairs(self):
        m = fd.matrix_from_pairs(["a", "b", "c"], {("a", "b"): 0.9, ("c", "a"): -0.1})
        self.assertEqual(m[1, 0], 0.9)
        self.assertEqual(m[0, 2], -0.1)
        self.assertTrue(np.isnan(m[1, 2]))
        np.testing.assert_allclose(np.diag(m), 1.0)
        with self.assertRaises(ValueError):
            fd.matrix_from_pairs(["a"], {("a", "x"): 1.0})

    def test_off_diagonal_summary_skips_mismatch(self):
        m = np.array([[1, 0.9, 0.05], [0.9, 1, -0.02], [0.05, -0.02, 1]])
        mism = np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]], dtype=bool)
        s = fd.off_diagonal_summary(m, mism)
        self.assertEqual(s["n"], 4)
        self.assertAlmostEqual(s["min"], -0.02)
        self.assertAlmostEqual(s["max"], 0.9)

    def test_heatmap_pairs(self):
        self.assertEqual(fd.heatmap_pairs(["a", "b", "c"], [("a", "b", "x"), ("a", "zz", "y")]),
                         [("a", "b", "x")])
        self.assertEqual(fd.heatmap_pairs(["a", "b"], []), [("a", "", ""), ("b", "", "")])


class NiahPivot(unittest.TestCase):
    CELLS = [
        {"model": "m", "context_length": 2000, "depth_percent": 50.0, "rouge1_recall": 100.0},
        {"model": "m", "context_length": 2000, "depth_percent": 50.0, "rouge1_recall": 50.0},  # repeat
        {"model": "m", "context_length": 2000, "depth_percent": 50.0, "rouge1_recall": 0.0},   # repeat
        {"model": "m", "context_length": 1000, "depth_percent": 0.0, "rouge1_recall": 80.0},
        {"model": "m", "context_length": 1000, "depth_percent": 50.0, "rouge1_recall": 20.0},
        {"model": "other", "context_length": 9000, "depth_percent": 10.0, "rouge1_recall": 1.0},
    ]

    def test_repeated_cells_averaged_and_axes_sorted(self):
        p = fd.niah_pivot(self.CELLS, "m")
        np.testing.assert_allclose(p["depths"], [0.0, 50.0])
        np.testing.assert_array_equal(p["lengths"], [1000, 2000])
        np.testing.assert_allclose(p["mean"], [[80.0, np.nan], [20.0, 50.0]])
        np.testing.assert_array_equal(p["count"], [[1, 0], [1, 3]])
        self.assertAlmostEqual(p["overall"], 50.0)

    def test_model_filter_and_errors(self):
        self.assertEqual(fd.niah_pivot(self.CELLS)["lengths"].tolist(), [1000, 2000, 9000])
        self.assertEqual(fd.models_of_cells(self.CELLS), ["m", "other"])
        with self.assertRaises(ValueError):
            fd.niah_pivot(self.CELLS, "absent")


class Readers(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def test_score_round_trip(self):
        t = make_stores.sample_tests(5, 3, 4, hot=[(1, 2)])
        p = os.path.join(self.d, "score.h5")
        make_stores.write_score(p, {"m": t})
        s = rhead_stores.read_score(p, with_tests=True)
        m = s.models["m"]
        np.testing.assert_allclose(m.mean, t.mean(0))
        np.testing.assert_array_equal(m.bins, fd.bin_counts(m.mean))
        np.testing.assert_array_equal(m.ranking, fd.ranking(m.mean))
        self.assertEqual(m.test_cells[0], "m.n0.L1000.D50")
        self.assertEqual(s.header["status"], "complete")
        self.assertEqual(s.header["git_revision"][:4], "0123")

    def test_refuses_newer_schema_incomplete_wrong_stage_and_missing(self):
        t = {"m": make_stores.sample_tests(2, 2, 2)}
        newer = os.path.join(self.d, "newer.h5")
        make_stores.write_score(newer, t, schema_version=2)
        with self.assertRaisesRegex(rhead_stores.StoreError, "newer.h5.*schema_version 2"):
            rhead_stores.read_score(newer)
        running = os.path.join(self.d, "running.h5")
        make_stores.write_score(running, t, status="running")
        with self.assertRaisesRegex(rhead_stores.StoreError, "running.h5.*'running'"):
            rhead_stores.read_score(running)
        with self.assertRaisesRegex(rhead_stores.StoreError, "running.h5.*stage 'score'"):
            rhead_stores.read_correlate(running)
        with self.assertRaisesRegex(rhead_stores.StoreError, "absent.h5: no such store"):
            rhead_stores.read_generate(os.path.join(self.d, "absent.h5"))
        open(os.path.join(self.d, "half.h5.partial"), "w").close()
        with self.assertRaisesRegex(rhead_stores.StoreError, r"half.h5.partial exists"):
            rhead_stores.read_score(os.path.join(self.d, "half.h5"))

    def test_correlate_and_generate(self):
        maps = {"a": np.eye(3), "b": np.eye(3) * 0.5 + 0.1, "c": np.ones((2, 2))}
        p = os.path.join(self.d, "correlate.h5")
        _, pear, mism = make_stores.write_correlate(p, maps, [("a", "b", "base vs chat")])
        c = rhead_stores.read_correlate(p)
        self.assertEqual(c.models, ["a", "b", "c"])
        np.testing.assert_allclose(c.matrices["pearson"], pear)
        np.testing.assert_array_equal(c.shape_mismatch, mism.astype(bool))
        self.assertEqual((c.pairs[0].a, c.pairs[0].b, c.pairs[0].label), ("a", "b", "base vs chat"))
        self.assertAlmostEqual(c.pairs[0].pearson, 1.0)
        g = os.path.join(self.d, "generate.h5")
        make_stores.write_generate(g, [("a", 0, 1000, 0, 100.0), ("a", 1, 1000, 0, 50.0)], {"a": "llama"})
        gs = rhead_stores.read_generate(g, with_responses=True)
        self.assertEqual(gs.models["a"]["family"], "llama")
        self.assertEqual(gs.cells[0]["response"], "eat a sandwich")
        self.assertAlmostEqual(float(fd.niah_pivot(gs.cells, "a")["mean"][0, 0]), 75.0)


if __name__ == "__main__":
    unittest.main()
