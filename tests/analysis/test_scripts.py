"""Every figure script and the report, run as commands on small stores written here with h5py
(docs/STORE.md layouts): each must write a non-empty PNG; missing or bad stores must give clear errors."""

import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ANALYSIS = os.path.normpath(os.path.join(HERE, "..", "..", "analysis"))
sys.path.insert(0, HERE)

import make_stores  # noqa: E402

PY = sys.executable
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(script, *args):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([PY, os.path.join(ANALYSIS, script), *args], capture_output=True, text=True,
                          env=env, timeout=240)


class Scripts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.run_dir = os.path.join(cls.tmp.name, "run")
        os.makedirs(cls.run_dir)
        tests = {"base": make_stores.sample_tests(12, 6, 5, 0, hot=[(2, 1), (4, 3)]),
                 "base-chat": make_stores.sample_tests(9, 6, 5, 1, hot=[(2, 1)]),
                 "other odd.name": make_stores.sample_tests(7, 4, 4, 2, hot=[(1, 1)])}
        make_stores.write_score(os.path.join(cls.run_dir, "score.h5"), tests)
        make_stores.write_correlate(os.path.join(cls.run_dir, "correlate.h5"),
                                    {k: v.mean(0) for k, v in tests.items()},
                                    [("base", "base-chat", "base vs chat")])
        cells = [(m, n, L, D, float(max(0, 100 - L / 100 - D / 2 + 20 * n)))
                 for m in ("base", "base-chat") for n in range(3)
                 for L in (1000, 2000, 3000, 5000) for D in (0, 33.3, 66.7, 100)]
        make_stores.write_generate(os.path.join(cls.run_dir, "generate.h5"), cells,
                                   {"base": "toy", "base-chat": "toy"})
        make_stores.write_ablate(os.path.join(cls.run_dir, "ablate.h5"), *make_stores.sample_ablate())

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def assert_png(self, path):
        self.assertTrue(os.path.isfile(path), path)
        with open(path, "rb") as f:
            head = f.read(8)
        self.assertEqual(head, PNG_MAGIC, path)
        self.assertGreater(os.path.getsize(path), 5000, path)

    def check_script(self, script, expected, *extra):
        out = os.path.join(self.tmp.name, "out_" + script)
        r = run(script, self.run_dir, out, *extra)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in expected:
            self.assert_png(os.path.join(out, name))
        self.assertEqual(sorted(r.stdout.split()), sorted(os.path.join(out, n) for n in expected))

    def test_fig3(self):
        self.check_script("fig3_bins.py", ["fig3_bins.png"])

    def test_fig4(self):
        self.check_script("fig4_frequency.py", ["fig4_frequency.png"], "--top", "20")

    def test_fig5(self):
        self.check_script("fig5_heatmaps.py", ["fig5_heatmaps.png"])
        self.check_script("fig5_heatmaps.py", ["fig5_heatmaps.png"], "--pairs", "base-chat:base")
        r = run("fig5_heatmaps.py", self.run_dir, self.tmp.name, "--pairs", "base:absent")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--pairs 'base:absent'", r.stderr)

    def test_fig6(self):
        self.check_script("fig6_correlation.py", ["fig6_correlation.png"])
        self.check_script("fig6_correlation.py", ["fig6_spearman.png"], "--metric", "spearman")

    def test_niah(self):
        self.check_script("niah_heatmap.py", ["niah_base.png", "niah_base-chat.png"])

    def test_fig1(self):
        self.check_script("fig1_masked_heatmaps.py", ["fig1_base.png", "fig1_base-chat.png"])
        self.check_script("fig1_masked_heatmaps.py", ["fig1_base-chat.png"], "--k", "2", "--seed", "1",
                          "--models", "base-chat")
        r = run("fig1_masked_heatmaps.py", self.run_dir, self.tmp.name, "--k", "99")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no masked cells with K = 99", r.stderr)
        self.assertIn("no cells with K = 99", r.stderr)   # the per-model notes

    def test_fig7(self):
        self.check_script("fig7_niah_vs_k.py", ["fig7_niah_vs_k.png"])
        self.check_script("fig7_niah_vs_k.py", ["fig7_niah_vs_k.png"], "--band", "std", "--models", "base")

    def test_fig8(self):
        self.check_script("fig8_qa.py", ["fig8_qa.png"])
        self.check_script("fig8_qa.py", ["fig8_qa.png"], "--metric", "exact_match", "--band", "std")

    def test_fig9(self):
        self.check_script("fig9_errors.py", ["fig9_errors.png", "fig9_case_base.png",
                                             "fig9_case_base-chat.png"])
        self.check_script("fig9_errors.py", ["fig9_errors.png", "fig9_case_base.png"],
                          "--cell", "base.zero.top.K2.n0.L8000.D0")
        self.check_script("fig9_errors.py", ["fig9_errors.png", "fig9_case_base.png"], "--k", "10",
                          "--models", "base")
        r = run("fig9_errors.py", self.run_dir, self.tmp.name, "--cell", "nope")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--cell nope: no such masked-NIAH cell", r.stderr)

    def test_fig10(self):
        self.check_script("fig10_cot.py", ["fig10_cot.png"])
        self.check_script("fig10_cot.py", ["fig10_cot.png"], "--metric", "f1")

    def test_help(self):
        for s in ("fig1_masked_heatmaps.py", "fig3_bins.py", "fig4_frequency.py", "fig5_heatmaps.py",
                  "fig6_correlation.py", "fig7_niah_vs_k.py", "fig8_qa.py", "fig9_errors.py", "fig10_cot.py",
                  "niah_heatmap.py", "report.py"):
            r = run(s, "--help")
            self.assertEqual(r.returncode, 0, s)
            self.assertIn("usage:", r.stdout)

    def test_default_out_dir_and_report(self):
        r = subprocess.run([os.path.join(ANALYSIS, "report"), self.run_dir], capture_output=True,
                           text=True, timeout=400, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
                                                           RHEAD_PYTHON=PY))
        self.assertEqual(r.returncode, 0, r.stderr)
        figs = os.path.join(self.run_dir, "figures")
        for name in ("fig1_base.png", "fig1_base-chat.png", "fig3_bins.png", "fig4_frequency.png",
                     "fig5_heatmaps.png", "fig6_correlation.png", "fig7_niah_vs_k.png", "fig8_qa.png",
                     "fig9_errors.png", "fig9_case_base.png", "fig9_case_base-chat.png", "fig10_cot.png",
                     "niah_base.png", "niah_base-chat.png"):
            self.assert_png(os.path.join(figs, name))
        with open(os.path.join(figs, "report.md"), encoding="utf-8") as f:
            md = f.read()
        for text in ("![Figure 3", "](fig6_correlation.png)", "other odd.name", "base vs chat",
                     "0123456789ab", "/tmp/test/jobs/test.ini", "2024-05-01T12:00:00Z", "### Top-10 heads",
                     "### Figure 1: ", "](fig1_base.png)", "### Figure 7: ", "](fig7_niah_vs_k.png)",
                     "### Figure 8: ", "### Figure 9: ", "](fig9_case_base.png)", "### Figure 10: ",
                     "## Masked needle in a haystack (ablate.h5)", "## Downstream tasks under masking",
                     # base, uniform, K = 10: top-K 41.7 (synthetic grid), errors 2 / 2 / 4 of 12 cells
                     "| uniform | 10 | 41.7 |", "| 2 / 2 / 4 |",
                     "| base-chat | extractqa | qa | none | 0 | 4 | 56.0 |"):
            self.assertIn(text, md)
        self.assertNotIn("Not drawn", md)
        self.assertNotIn("disagree", md)


class MissingStores(unittest.TestCase):
    def test_script_on_missing_store_exits_2_naming_the_file(self):
        with tempfile.TemporaryDirectory() as d:
            r = run("fig6_correlation.py", d, d)
            self.assertEqual(r.returncode, 2)
            self.assertIn(os.path.join(d, "correlate.h5") + ": no such store", r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def test_report_skips_figures_without_their_store(self):
        with tempfile.TemporaryDirectory() as d:
            make_stores.write_score(os.path.join(d, "score.h5"),
                                    {"m": make_stores.sample_tests(4, 3, 3, hot=[(0, 1)])})
            make_stores.write_score(os.path.join(d, "correlate.h5"), {"m": np.zeros((1, 2, 2))},
                                    status="running")  # present but unusable
            r = run("report.py", d)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "figures", "report.md"), encoding="utf-8") as f:
                md = f.read()
            self.assertIn("](fig3_bins.png)", md)
            self.assertIn("NIAH (needle-in-a-haystack ROUGE-1 heatmaps (depth x length)): needs `generate.h5`", md)
            self.assertIn("Figure 6 (model x model Pearson correlation of head maps): `correlate.h5` unusable", md)
            self.assertIn("Figure 1 (", md)
            self.assertIn("Figure 10 (chain of thought vs answer only under masking): needs `ablate.h5`", md)
            self.assertFalse(os.path.exists(os.path.join(d, "figures", "fig6_correlation.png")))
            self.assertFalse(any(n.startswith("niah_") for n in os.listdir(os.path.join(d, "figures"))))


class PartialAblateStores(unittest.TestCase):
    """Ablate stores with masked NIAH only (and a summary that disagrees with its cells) or tasks only:
    the figures without data are skipped with a one-line note, the mismatch is reported."""

    def test_task_figures_skipped_with_a_note_and_mismatch_reported(self):
        with tempfile.TemporaryDirectory() as d:
            cells, _, tracked = make_stores.sample_ablate(models=(("m", ("uniform",)),), ks=(2, 5), seeds=2,
                                                          lengths=(1000, 2000), depths=(0, 100))
            make_stores.write_ablate(os.path.join(d, "ablate.h5"), cells, (), tracked,
                                     summary_delta={("m", "uniform/rand1", 5): -3.0})
            for script in ("fig8_qa.py", "fig10_cot.py"):
                r = run(script, d, d)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertIn("nothing to draw", r.stderr)
                self.assertNotIn("Traceback", r.stderr)
            r = run("fig7_niah_vs_k.py", d, d)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("note: Figure 7: m: /summary disagrees with the cells (1 rows)", r.stderr)
            r = run("report.py", d)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "figures", "report.md"), encoding="utf-8") as f:
                md = f.read()
            self.assertIn("Downstream tasks: none in `ablate.h5` (Figures 8 and 10 not drawn).", md)
            self.assertIn("- Figure 8 (extractive QA F1 vs number of masked heads, retrieval vs random): "
                          "nothing to draw:", md)
            self.assertIn('has no task of kind "cot" or "direct"', md)
            self.assertIn("**/summary disagrees with the cells** (1 rows): row uniform/rand1 K=5", md)
            self.assertIn("- note: Figure 7: m: /summary disagrees", md)
            for name in ("fig1_m.png", "fig7_niah_vs_k.png", "fig9_errors.png", "fig9_case_m.png"):
                self.assertTrue(os.path.isfile(os.path.join(d, "figures", name)), name)
            self.assertFalse(os.path.exists(os.path.join(d, "figures", "fig8_qa.png")))

    def test_tasks_only_store_draws_the_task_figures_and_skips_the_niah_ones(self):
        with tempfile.TemporaryDirectory() as d:
            _, tasks, tracked = make_stores.sample_ablate(models=(("t", ("uniform",)),), task_models=("t",))
            make_stores.write_ablate(os.path.join(d, "ablate.h5"), [], tasks, tracked)
            r = run("report.py", d)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(os.path.join(d, "figures", "report.md"), encoding="utf-8") as f:
                md = f.read()
            for fig in ("Figure 1", "Figure 7", "Figure 9"):
                self.assertRegex(md, rf"- {fig} \([^\n]*\): nothing to draw: ")
            self.assertIn("No masked-NIAH rows in this store (tasks only).", md)
            self.assertIn("| t | gsm8k_cot | cot | none | 0 | 4 |", md)
            self.assertNotIn("disagree", md)
            for name in ("fig8_qa.png", "fig10_cot.png"):
                self.assertTrue(os.path.isfile(os.path.join(d, "figures", name)), name)


if __name__ == "__main__":
    unittest.main()
