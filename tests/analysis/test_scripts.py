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

    def test_help(self):
        for s in ("fig3_bins.py", "fig4_frequency.py", "fig5_heatmaps.py", "fig6_correlation.py",
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
        for name in ("fig3_bins.png", "fig4_frequency.png", "fig5_heatmaps.png", "fig6_correlation.png",
                     "niah_base.png", "niah_base-chat.png"):
            self.assert_png(os.path.join(figs, name))
        with open(os.path.join(figs, "report.md"), encoding="utf-8") as f:
            md = f.read()
        for text in ("![Figure 3", "](fig6_correlation.png)", "other odd.name", "base vs chat",
                     "Figure 7 (", "needs `ablate.h5`", "0123456789ab", "/tmp/test/jobs/test.ini",
                     "2024-05-01T12:00:00Z", "### Top-10 heads"):
            self.assertIn(text, md)


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
            self.assertFalse(os.path.exists(os.path.join(d, "figures", "fig6_correlation.png")))
            self.assertFalse(any(n.startswith("niah_") for n in os.listdir(os.path.join(d, "figures"))))


if __name__ == "__main__":
    unittest.main()
