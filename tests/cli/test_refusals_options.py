"""Options are refused for the right reason (issue 24, D6, D11, D19).

D6: ``--loss pixel=inf`` (or ``1e400``, ``nan``) was refused as "must be positive": every float
option and parameter now says a value is not a finite number when it is not.
D11: ``--low-res-first 16:1e-320`` was accepted (no step at low resolution) and
``--cache-variants`` had no upper bound; both are bounded, the message says why.
D19: ``--disc-width``, ``--disc-lr``, ``--cache-variants``, ``--cache-dtype``, ``--val-limit``,
``--preview``, ``--val-every`` (and ``--pixel-distance``, ``--memory-budget``) were ignored
without a word where they do nothing, while ``--comparator`` was refused: an option given
explicitly (even at its default value) with no effect is refused, naming what it needs;
defaults never are."""
from __future__ import annotations

import math

import pytest

import featinv
from featinv.errors import FeatinvError
from featinv.training.config import TrainConfig, check_config, check_given_options, parse_losses

from helpers import error_lines, run_cli, write_images


def config(**kw) -> TrainConfig:
    return TrainConfig(**{"feature": "hog", "data": "d", "out": "o", **kw})


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", 3, size=(40, 40))
    return tmp_path / "imgs"


def train_line(capsys, images, out, *extra) -> str:
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", images, "-o", out,
                           "--image-size", 32, "--budget", 4, "--device", "cpu", "--workers", 0,
                           *extra)
    [line] = error_lines(err)
    assert code == 1, err
    assert not out.exists()  # refused before the run folder is made
    return line


# -- D6: not a finite number --------------------------------------------------------------------

@pytest.mark.parametrize("weight", ["inf", "1e400", "nan", "-inf", "NaN", "Infinity"])
def test_a_loss_weight_that_is_no_finite_number_says_so(weight):
    with pytest.raises(FeatinvError, match="must be a finite positive number"):
        parse_losses(f"pixel=1,feature={weight}")


@pytest.mark.parametrize("field", ["lr", "save_minutes", "disc_lr", "width", "disc_width",
                                   "memory_budget", "ema"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, float("1e400")])
def test_float_options_that_are_no_finite_number_say_so(field, value):
    with pytest.raises(FeatinvError, match=f"^{field} must be a finite"):  # the API's name
        check_config(config(**{field: value}))


@pytest.mark.parametrize("value", [(math.nan, 1.0), (math.inf, 1.0), (0.5, math.nan)])
def test_a_crop_scale_that_is_no_finite_number_says_so(value):
    with pytest.raises(FeatinvError, match="^crop_scale.*finite"):
        check_config(config(crop_scale=value))


@pytest.mark.parametrize("betas", [(math.nan, 0.999), (0.9, math.inf), (0.9, 1.0), (1, 2, 3)])
def test_adam_betas_from_the_api_are_checked_too(betas):
    with pytest.raises(FeatinvError, match="betas must be two finite numbers"):
        check_config(config(betas=betas))


@pytest.mark.parametrize("value", ["inf", "nan", "1e400", "-inf"])
def test_a_float_parameter_that_is_no_finite_number_says_so(value):
    with pytest.raises(FeatinvError, match="expects float \\(a finite number\\)"):
        featinv.Param("scale", 1.0).coerce(value)


@pytest.mark.parametrize("args, option", [
    (["--lr", "inf"], "--lr"), (["--lr", "1e400"], "--lr"), (["--disc-lr", "nan",
                                                              "--loss", "pixel,adversarial"],
                                                             "--disc-lr"),
    (["--loss", "pixel=1e400"], "--loss"), (["--width", "inf"], "--width"),
    (["--crop-scale", "nan"], "--crop-scale"), (["--save-minutes", "inf"], "--save-minutes"),
])
def test_the_command_line_says_not_finite_in_one_line(tmp_path, capsys, images, args, option):
    line = train_line(capsys, images, tmp_path / "out", *args)
    assert option in line and "finite" in line, line


# -- D11: bounded ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["16:1e-320", "16:1e-5", "16:0.999999", "16:5e-324"])
def test_a_low_resolution_fraction_too_small_or_large_is_refused_with_why(text):
    with pytest.raises(FeatinvError, match="FRACTION must be from 0.01 to 0.99: a smaller part"):
        check_config(config(low_res_first=text))


@pytest.mark.parametrize("text", ["16:0.01", "16:0.5", "16:0.99", "off", "auto"])
def test_sensible_low_resolution_fractions_pass(text):
    check_config(config(low_res_first=text))


@pytest.mark.parametrize("variants", [0, -1, 1001, 10**9, 2**63])
def test_cache_variants_are_bounded_with_why(variants):
    with pytest.raises(FeatinvError, match="cache_variants must be a whole number from 1 to "
                                           "1000.*on disk"):
        check_config(config(cache_variants=variants, feature_cache="c"))


def test_cache_variants_within_bounds_pass():
    for variants in (1, 4, 1000):
        check_config(config(cache_variants=variants, feature_cache="c"))


# -- D19: an option given with no effect --------------------------------------------------------

@pytest.mark.parametrize("args, needs", [
    (["--disc-width", "0.25"], "adversarial loss"), (["--disc-lr", "0.001"], "adversarial loss"),
    (["--disc-conditional"], "adversarial loss"), (["--comparator", "hog"], "feature loss"),
    (["--cache-variants", "4"], "--feature-cache"), (["--cache-dtype", "float16"],
                                                    "--feature-cache"),
    (["--val-limit", "500"], "--val DIR"), (["--preview", "8"], "--val DIR"),
    (["--val-every", "0"], "--val DIR"),
    (["--pixel-distance", "l2", "--loss", "feature"], "pixel loss"),
    (["--memory-budget", "1", "--data-store", "files"], "--data-store auto"),
])
def test_an_option_given_where_it_does_nothing_is_refused(tmp_path, capsys, images, args, needs):
    """Given at its default value too (``--val-every 0``, ``--preview 8``): the user typed it."""
    line = train_line(capsys, images, tmp_path / "out", *args)
    assert args[0] in line and needs in line and "drop " + args[0] in line, line


@pytest.mark.parametrize("change", [
    dict(disc_width=0.5), dict(disc_lr=1e-3), dict(cache_variants=2),
    dict(cache_dtype="float32"), dict(val_limit=3), dict(preview=2), dict(val_every=2),
    dict(pixel_distance="l1", loss="feature"), dict(memory_budget=2.0, data_store="memory"),
])
def test_the_python_api_refuses_a_changed_setting_that_does_nothing(change):
    """In the API's words: the field's name, and 'leave it at its default' (issue 24, A7)."""
    option = next(iter(change))
    with pytest.raises(FeatinvError, match=f"^{option} is for .* or leave {option} at its "
                                           "default"):
        check_config(config(**change))


@pytest.mark.parametrize("change", [
    dict(loss="pixel,adversarial", disc_width=0.5, disc_lr=1e-3),
    dict(feature_cache="c", cache_variants=2, cache_dtype="float32", low_res_first="off"),
    dict(val="v", val_limit=3, preview=2, val_every=2),
    dict(memory_budget=2.0), dict(pixel_distance="l1"), dict(),
])
def test_settings_where_they_act_and_defaults_pass(change):
    check_config(config(**change))
    check_given_options(config(**change), set(change))


def test_defaults_never_count_as_given(tmp_path, capsys, images):
    """A plain run (no --val, no cache, a pixel loss) passes the check: every default of the
    options above is left out of what the user gave."""
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", images, "-o", tmp_path / "o",
                           "--image-size", 32, "--budget", 2, "--device", "cpu", "--workers", 0,
                           "--batch-size", 2)
    assert code == 0, err


# round 9: the same class in the other commands (invert, evaluate, audit, pack), and a
# decoder's name where a representation is expected
@pytest.mark.parametrize("extra", [["--steps", "5"], ["--step-size", "0.1"],
                                   ["--lambda-tv", "1"], ["--lambda-alpha", "1e-5"]])
def test_optimisation_options_without_method_optimize_are_refused(tmp_path, capsys, images,
                                                                  extra):
    code, _, err = run_cli(capsys, "invert", "-f", "hog", images / "img000.png", "-o",
                           tmp_path / "o.png", *extra)
    [line] = error_lines(err)
    assert code == 1 and extra[0] in line and "--method optimize" in line
    assert not (tmp_path / "o.png").exists()
    code, _, err = run_cli(capsys, "evaluate", "-f", "hog", "--data", images, *extra)
    assert code == 1 and "--method optimize" in error_lines(err)[0]


def test_invert_at_the_defaults_still_runs(tmp_path, capsys, images):
    code, _, err = run_cli(capsys, "invert", "-f", "hog", images / "img000.png", "-o",
                           tmp_path / "o.png")
    assert code == 0, err
    assert (tmp_path / "o.png").exists()


@pytest.mark.parametrize("extra", [["--epochs", "3"], ["--train-limit", "3"]])
def test_audit_training_options_without_train_data_are_refused(tmp_path, capsys, images, extra):
    code, _, err = run_cli(capsys, "audit", "-f", "hog", "--data", images, "-o", tmp_path / "a",
                           *extra)
    [line] = error_lines(err)
    assert code == 1 and extra[0] in line and "--train-data" in line
    assert not (tmp_path / "a").exists()


def test_pack_license_with_a_file_output_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "pack", "hog", "-o", tmp_path / "p.safetensors",
                           "--license", "mit")
    [line] = error_lines(err)
    assert code == 1 and "--license" in line and "folder" in line
    assert not (tmp_path / "p.safetensors").exists()


def test_comparator_weights_without_a_comparator_name_the_option_given(capsys, images):
    code, _, err = run_cli(capsys, "evaluate", "-f", "hog", "--data", images,
                           "--comparator-weights", "random")
    [line] = error_lines(err)
    assert code == 1 and "--comparator-weights" in line


@pytest.mark.parametrize("command", [["describe", "hog.default"],
                                     ["describe", "HOG.realistic"],
                                     ["train", "-f", "hog.default", "-o", "x"]])
def test_a_decoders_name_where_a_representation_is_expected_says_which_to_use(tmp_path, capsys,
                                                                             images, command):
    if command[0] == "train":
        command = [*command[:-1], tmp_path / "run", "--data", images]
    code, _, err = run_cli(capsys, *command)
    [line] = error_lines(err)
    assert code == 1 and "no representation" in line and "use 'hog'" in line
