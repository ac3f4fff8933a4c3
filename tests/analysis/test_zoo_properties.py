"""Unit tests of analysis/zoo_properties.py (the toy zoo's paper properties) on hand-made cells and
summary rows with hand-computed expected values. The properties on a real zoo run are asserted by the
quick-start e2e test (tests/e2e/test_quickstart_slurm.sh)."""

import math
import os
import sys
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "analysis"))

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


class TaskDrop(unittest.TestCase):
    def test_relative_drop_of_exact_match(self):
        t = rs.TaskSummary(name="r_cot", kind="cot", rows=["none/none", "uniform/top", "uniform/rand0"],
                           k=np.array([0, 4, 4]), n_items=np.array([16, 16, 16]), f1=np.zeros(3),
                           exact_match=np.array([80.0, 20.0, 75.0]))
        self.assertEqual(zp.task_drop(t, 4), (80.0, 20.0, 0.75))
        t.exact_match = np.array([0.0, 0.0, 0.0])
        self.assertTrue(math.isnan(zp.task_drop(t, 4)[2]))   # nothing to lose: no drop defined


class Render(unittest.TestCase):
    def test_table_marks_failures(self):
        text = zp.render([zp.Check("a", "1", ">= 0", True), zp.Check("long name", "22", "< 1", False)])
        lines = text.splitlines()
        self.assertEqual(len(lines), 3)
        self.assertTrue(lines[1].endswith("yes") and lines[2].endswith("NO"))


if __name__ == "__main__":
    unittest.main()
