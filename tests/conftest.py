"""Shared fixtures: the ../shared data folder beside the repository, small image folders, plugins.

Plain helper functions live in helpers.py."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import featinv.representation.plugins
# the helpers, re-exported for the files that still say ``from conftest import ...``
from helpers import REPO, SHARED, error_lines, link_photos, run_cli, saved_step, write_images  # noqa: F401

# the tests (and the commands they run) cache listings in a folder of their own
os.environ["FEATINV_CACHE_DIR"] = tempfile.mkdtemp(prefix="featinv-test-cache-")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data" / "train").is_dir():
        pytest.skip(f"the shared data folder {SHARED} is not present")
    return SHARED


@pytest.fixture(scope="session")
def train_subset(shared_dir, tmp_path_factory) -> Path:
    return link_photos(shared_dir / "data" / "train", 48, tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="session")
def val_subset(shared_dir, tmp_path_factory) -> Path:
    return link_photos(shared_dir / "data" / "val", 16, tmp_path_factory.mktemp("val"))


@pytest.fixture
def image_folder(tmp_path) -> Path:
    write_images(tmp_path / "images", 12)
    return tmp_path / "images"


@pytest.fixture
def fresh_plugins(monkeypatch):
    """Reload plugins from scratch for this test and again afterwards."""
    featinv.representation.plugins.reset()
    yield
    featinv.representation.plugins.reset()


@pytest.fixture
def extra_plugins(fresh_plugins):
    """Register plugins for one test: ``extra_plugins(name, plugin)``; all removed afterwards."""
    from featinv.representation.plugins import register_plugin, unregister_plugin

    names = []

    def add(name, plugin):
        names.append(name)
        register_plugin(plugin, name)

    yield add
    for name in names:
        unregister_plugin(name)


# Slow tests of the files still at the top of tests/ while another change edits them (they move
# to tests/<package>/ and take @pytest.mark.slow themselves afterwards): marked here by name.
SLOW_ELSEWHERE = {
    "test_bad_inputs.py": {"test_train_skips_bad_files_and_trains_on_the_rest"},
    "test_bad_inputs_limits.py": {"test_tiny_inputs_stay_under_1_gb_and_fail_in_one_line"},
    "test_bad_inputs_outputs.py": {"test_existing_outputs_need_overwrite",
                                   "test_two_checkpoints_of_one_representation_do_not_share_an_output"},
    "test_bad_inputs_wrong.py": {"test_tensors_outside_0_1_are_refused_by_the_api"},
    "test_training_guards.py": {"test_sigkilled_run_resumes_to_the_same_weights",
                                "test_bad_training_files_are_reported_and_skipped",
                                "test_full_disk_while_saving_keeps_the_previous_checkpoint",
                                "test_nan_loss_stops_and_keeps_the_last_good_checkpoint"},
    "test_refusals_archives.py": {"test_bombs_in_every_weights_option_stay_small",
                                  "test_headers_are_read_without_the_data",
                                  "test_the_memory_budget_bounds_any_archive"},
    "test_refusals_hangs.py": {"test_images_that_are_no_regular_files_are_reported",
                               "test_a_cache_file_that_never_ends_is_ignored_and_replaced",
                               "test_a_checkpoint_with_an_absurd_cell_is_refused_at_once",
                               "test_a_feature_cache_file_that_never_ends_is_one_line",
                               "test_absurd_parameters_are_refused_from_their_bounds"},
    "test_refusals_memory.py": {"test_a_header_claiming_a_strip_is_refused_everywhere_from_the_header",
                                "test_a_file_far_longer_than_its_picture_is_refused_unread",
                                "test_big_images_are_decoded_small"},
    "test_refusals_numbers.py": {"test_a_training_state_with_nan_is_refused"},
    "test_refusals_overwrite.py": {"test_a_killed_process_is_seen_by_the_next_run",
                                   "test_fine_tuning_a_run_in_place",
                                   "test_a_typo_with_overwrite_keeps_the_run"},
    "test_refusals_recovery.py": {"test_a_crafted_training_state_is_refused_in_one_line",
                                  "test_a_live_featinv_run_still_holds_its_folder",
                                  "test_a_lock_that_names_no_featinv_run_is_taken_over",
                                  "test_a_real_sigkill_after_the_first_epoch",
                                  "test_a_replacing_run_whose_first_save_fails_puts_the_old_run_back",
                                  "test_a_save_that_cannot_be_written_is_the_checkpoint_message",
                                  "test_what_a_run_killed_before_its_first_checkpoint_left_is_replaced",
                                  "test_safetensors_write_errors_are_the_checkpoint_message"},
    "test_refusals_small.py": {"test_a_missing_timm_weight_is_reported_before_timm_is_imported"},
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if getattr(item, "originalname", None) in SLOW_ELSEWHERE.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
