"""benchmarks/recipe.py's bookkeeping: arms, their run folders and the table (no training)."""
from __future__ import annotations

import sys

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import recipe  # noqa: E402


def test_every_arm_has_its_own_run_folder_and_differs_from_the_base_in_its_lever():
    for arms in (recipe.arms(), recipe.default_arms()):
        folders = [recipe.folder_name(a) for a in arms]
        assert len(set(folders)) == len(folders)
    assert recipe.folder_name(arms[0]) == recipe.folder_name(dict(arms[0]))  # stable
    for a in recipe.arms():
        if a["group"] not in ("baseline", "defaults", "combined") and not a["patch"]:
            assert a["args"] != recipe.BASE, a["name"]
    assert all(a["args"] == [] for a in recipe.default_arms())  # the defaults as users get them


def test_the_table_shows_each_arm_against_the_base_at_its_budget():
    rows = [{"name": "base", "group": "baseline", "budget": 30000, "seed": 0,
             "val_normalized_error": 0.41},
            {"name": "lr 5e-3", "group": "peak learning rate", "budget": 30000, "seed": 0,
             "val_normalized_error": 0.40},
            {"name": "default", "group": "defaults", "budget": 60000, "seed": 0,
             "val_normalized_error": 0.386}]
    speeds = [{"setting": "v1 recipe", "cpu_ms_per_image": 4.0},
              {"setting": "default", "cpu_ms_per_image": 5.0}]
    text = recipe.table(rows, speeds)
    assert "| lr 5e-3 | peak learning rate | 30,000 | 0 | 0.4000 | -0.0100 |" in text
    assert "| default | defaults | 60,000 | 0 | 0.3860 |  |" in text  # no base at 60k
    assert "| default | 5.00 | 1.25 |" in text


def test_the_sweep_holds_its_settings_fixed_whatever_the_defaults_are():
    pinned = dict(recipe.PINNED)
    assert pinned["--batch-size"] == "64" and pinned["--low-res-first"] == "off"
    assert "--width" in recipe.BASE and "--lr" in recipe.BASE and "--schedule" in recipe.BASE
