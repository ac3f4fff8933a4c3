"""Unit tests of analysis/zoo_properties.py (the toy zoo's paper properties) on hand-made cells and
summary rows with hand-computed expected values. The properties on a real zoo run are asserted by the
quick-start e2e test (tests/e2e/test_quickstart_slurm.sh)."""

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))

import make_stores  # noqa: E402
import rhead_stores as rs  # noqa: E402
import zoo_properties as zp  # noqa: E402


def summary(rows, k, recall, tasks=None):
    n = len(rows)
    return rs.AblateSummary(model="m", rows=list(rows), k=np.array(k), n_cells=np.ones(n, dtype=np.int64),
                            mean_recall=np.array(recall, dtype=np.float64),
                            error_counts=np.zeros((n, 4), dtype=np.int64), error_types=list(rs.ERROR_TYPES),
                            tracked_heads=np.zeros((0, 2), dtype=np.int64), tasks=tasks or {})


class NiahWithinContext(unittest.TestCase):
    def test_mean_over_cells_up_to_the_context_of_that_model(self):
        cells = [{"model": "a", "context_length": 64, "rouge1_recall": 100.0},
                 {"model": "a", "context_length": 128, "rouge1_recall": 80.0},
                 {"model": "a", "context_length": 256, "rouge1_recall": 0.0},   # beyond: left out
                 {"model": "b", "context_length": 64, "rouge1_recall": 0.0}]    # other model
        self.assertEqual(zp.niah_within_context(cells, "a", 128), (90.0, 2))
        mean, n = zp.niah_within_context(cells, "a", 32)
        self.assertTrue(math.isnan(mean))
        self.assertEqual(n, 0)


class MaskingEffect(unittest.TestCase):
    ROWS = ["none/none", "uniform/top", "uniform/rand0", "uniform/rand1", "uniform/top", "uniform/rand0",
            "uniform/rand1", "zero/top"]
    K = [0, 2, 2, 2, 3, 3, 3, 3]
    RECALL = [96.0, 70.0, 90.0, 94.0, 20.0, 88.0, 80.0, 5.0]

    def test_rows_at_k_of_the_mode(self):
        unmasked, top, rand, seeds = zp.masking_effect(summary(self.ROWS, self.K, self.RECALL), 3)
        self.assertEqual((unmasked, top, seeds), (96.0, 20.0, 2))
        self.assertAlmostEqual(rand, 84.0)   # (88 + 80) / 2; the zero-mode row is another mode
        _, top_zero, rand_zero, n_zero = zp.masking_effect(summary(self.ROWS, self.K, self.RECALL), 3, "zero")
        self.assertEqual((top_zero, n_zero), (5.0, 0))
        self.assertTrue(math.isnan(rand_zero))

    def test_missing_k_is_nan(self):
        _, top, rand, seeds = zp.masking_effect(summary(self.ROWS, self.K, self.RECALL), 7)
        self.assertTrue(math.isnan(top) and math.isnan(rand))
        self.assertEqual(seeds, 0)


    def test_checks_pass_and_fail_on_the_shares(self):
        top, rand = zp.masking_checks("m", 3, summary(self.ROWS, self.K, self.RECALL))
        self.assertTrue(top.ok)      # 20 <= 48
        self.assertTrue(rand.ok)     # 84 >= 76.8
        self.assertAlmostEqual(top.margin, 28.0)    # 48 - 20 points of recall to spare
        self.assertAlmostEqual(rand.margin, 7.2)    # 84 - 76.8
        self.assertEqual(rand.margin_text(), "+7.2 pts")
        weak = list(self.RECALL)
        weak[4], weak[5] = 60.0, 50.0     # top 60 > 48; random (50 + 80) / 2 = 65 < 76.8
        top, rand = zp.masking_checks("m", 3, summary(self.ROWS, self.K, weak))
        self.assertFalse(top.ok)
        self.assertFalse(rand.ok)
        self.assertAlmostEqual(top.margin, -12.0)   # a failing property has a negative margin
        self.assertAlmostEqual(rand.margin, -11.8)

    def test_a_model_without_niah_shows_nothing_about_masking(self):
        zero = [0.0] * len(self.RECALL)
        top, rand = zp.masking_checks("m", 3, summary(self.ROWS, self.K, zero))
        self.assertFalse(top.ok, "0 of 0 is no evidence that masking halves NIAH")
        self.assertFalse(rand.ok)
        self.assertEqual(top.measured, "NIAH 0.0 of 0.0")


class TaskDrop(unittest.TestCase):
    def test_relative_drop_of_exact_match(self):
        t = rs.TaskSummary(name="r_cot", kind="cot", rows=["none/none", "uniform/top", "uniform/rand0"],
                           k=np.array([0, 4, 4]), n_items=np.array([16, 16, 16]), f1=np.zeros(3),
                           exact_match=np.array([80.0, 20.0, 75.0]))
        self.assertEqual(zp.task_drop(t, 4), (80.0, 20.0, 0.75))
        t.exact_match = np.array([0.0, 0.0, 0.0])
        self.assertTrue(math.isnan(zp.task_drop(t, 4)[2]))   # nothing to lose: no drop defined

    def test_cot_must_lose_a_larger_share_and_some(self):
        def task(name, unmasked, top):
            return rs.TaskSummary(name=name, kind="cot", rows=["none/none", "uniform/top"], k=np.array([0, 4]),
                                  n_items=np.array([16, 16]), f1=np.zeros(2), exact_match=np.array([unmasked, top]))
        cases = [((100, 44), (100, 100), True, 56.0),    # -56 % vs 0 %
                 ((100, 56), (100, 81), True, 25.0),     # -44 % vs -19 %: 25 points of share to spare
                 ((100, 0), (31, 0), False, 0.0),        # both lose everything: a tie
                 ((12, 12), (6, 12), False, 0.0),        # 0 % > -100 %, but the cot task did not drop at all
                 ((0, 0), (50, 50), False, None)]        # nothing to lose: no drop defined
        for (cu, ct), (du, dt), ok, margin in cases:
            c = zp.cot_check("m", 4, task("r_cot", cu, ct), task("r_direct", du, dt))
            self.assertEqual(c.ok, ok, c.measured)
            if margin is None:
                self.assertTrue(math.isnan(c.margin))
            else:
                self.assertAlmostEqual(c.margin, margin, msg=c.measured)
        self.assertEqual(c.name, "m: top-4 masking hurts r_cot more than r_direct")


class Render(unittest.TestCase):
    def test_matrix_lines_up_a_property_across_runs_whose_k_differs(self):
        def run(k, ok, margin):
            return [zp.Check(f"m: mask top-{k} retrieval heads", "x", "y", ok, "masking", margin, "pts",
                             "m: mask top-K retrieval heads"), zp.Check("m: NIAH", "x", "y", True, "niah", 10.0, "pts")]
        text = zp.render_matrix(["a", "b", "c"], [run(3, True, 50.0), run(4, False, -2.5), run(3, True, 6.0)[1:]])
        lines = text.splitlines()
        self.assertEqual(len(lines), 3)   # header, one row per property (not per K)
        self.assertIn("+50.0 pts", lines[1])
        self.assertIn("NO -2.5 pts", lines[1])
        self.assertTrue(lines[1].rstrip().endswith("-  1 of 3"))   # c does not measure it
        self.assertTrue(lines[2].endswith("3 of 3"))

    def test_table_marks_failures(self):
        text = zp.render([zp.Check("a", "1", ">= 0", True), zp.Check("long name", "22", "< 1", False)])
        lines = text.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[1].endswith("yes") and lines[2].endswith("NO"))


class RunWithoutCorrelate(unittest.TestCase):
    """A one-model run (jobs/toy_base.ini) has no correlate store: the family property is reported as
    not measured, the others are measured from the stores (in the report too), and --check asking for it
    exits 2."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        make_stores.write_train(os.path.join(d, "train.h5"), {"base": 128})
        make_stores.write_generate(os.path.join(d, "generate.h5"),
                                   [("base", 0, 64, 0, 100.0), ("base", 0, 128, 50, 80.0),
                                    ("base", 0, 256, 0, 0.0)],   # beyond the trained 128: left out
                                   {"base": "llama"})
        tests = np.zeros((4, 2, 3))
        tests[:, 1, 2] = 0.9   # the one retrieval head: 1 of 6 heads
        make_stores.write_score(os.path.join(d, "score.h5"), {"base": tests})
        cells, task_cells, tracked = make_stores.sample_ablate(models=(("base", ("uniform",)),), ks=(1,), seeds=2,
                                                               task_models=("base",), task_ks=(1,))
        make_stores.write_ablate(os.path.join(d, "ablate.h5"), cells, task_cells, tracked)

    def tearDown(self):
        self.tmp.cleanup()

    def run_main(self, *args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            rc = zp.main([self.tmp.name, *args])
        return rc, out.getvalue()

    def test_family_is_not_measured_and_the_rest_is(self):
        rc, text = self.run_main()
        self.assertEqual(rc, 0, text)
        self.assertIn("family not measured", text)
        self.assertIn("correlate.h5: no such store", text)
        self.assertNotIn("Pearson", text)
        self.assertIn("90.0 (2 cells)", text)          # (100 + 80) / 2 within 128 tokens
        self.assertIn("1 of 6 = 16.7 %", text)
        self.assertIn("mask top-1 retrieval heads", text)

    def test_the_report_shows_the_table_and_what_it_could_not_measure(self):
        out = os.path.join(self.tmp.name, "figures")
        r = subprocess.run([sys.executable, os.path.join(HERE, "..", "..", "analysis", "report.py"), self.tmp.name,
                            "--out", out], capture_output=True, text=True, env=dict(os.environ, MPLBACKEND="Agg"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("4 of 6 properties hold.", text)
        self.assertIn("Not measured: family", text)

    def test_check_exits_2_only_when_it_asks_for_the_unmeasured_kind(self):
        self.assertEqual(self.run_main("--check", "niah")[0], 0)
        rc, text = self.run_main("--check", "niah,family")
        self.assertEqual(rc, 2, text)
        self.assertIn("cannot measure", text)
        self.assertEqual(self.run_main("--check")[0], 2)

    def test_except_lets_one_named_property_fail_and_only_a_property_of_the_run(self):
        self.assertEqual(self.run_main("--check", "sparsity")[0], 1)    # 1 of 6 heads = 16.7 % > 10 %
        rc, text = self.run_main("--check", "sparsity", "--except", "base: retrieval heads (mean > 0.1)")
        self.assertEqual(rc, 0, text)
        self.assertIn("fails, as expected (--except)", text)
        rc, text = self.run_main("--check", "sparsity", "--except", "base: no such property")
        self.assertEqual(rc, 2, text)
        self.assertIn("names no property of this run", text)


if __name__ == "__main__":
    unittest.main()
