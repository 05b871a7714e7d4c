"""A training state that training cannot have written is refused on --resume, in one line,
before the run changes (issue 24, D7 and D8); metrics.jsonl is always strict JSON.

D7: a history holding NaN, strings or a negative epoch was resumed, and a bare NaN made
metrics.jsonl invalid JSON. D8: a negative ``exp_avg_sq`` or a negative or absurd Adam step was
resumed and then failed at every step with "Loss became nan"."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from featinv.errors import CheckpointError
from featinv.io.checkpoint import META_KEY, METRICS_FILE, STATE_FILE
from featinv.io.state_checks import check_history, finite_record, metrics_line

from helpers import error_lines, run_cli, write_images

STEPS = 6  # the base run: 24 images in batches of 4


def train_args(data, out, budget, *extra):
    return ["train", "-f", "hog", "--data", data, "-o", out, "--image-size", 32, "--budget",
            budget, "--batch-size", 4, "--device", "cpu", "--workers", 0, "--precision", "fp32",
            *extra]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from helpers import run_cli as _  # noqa: F401 (capsys is function-scoped: run main here)
    from featinv.cli.main import main

    root = tmp_path_factory.mktemp("state")
    write_images(root / "data", 6, size=(40, 40))
    with pytest.raises(SystemExit) as done:
        main([str(a) for a in train_args(root / "data", root / "run", 4 * STEPS)])
    assert done.value.code == 0
    return root


@pytest.fixture
def run(base, tmp_path):
    shutil.copytree(base / "run", tmp_path / "run")
    return tmp_path / "run"


def tamper(run, edit_meta=None, edit_tensors=None) -> None:
    path = run / STATE_FILE
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        raw = f.metadata()
    meta = json.loads(raw[META_KEY])
    if edit_meta:
        edit_meta(meta)
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(path), metadata={**raw, META_KEY: json.dumps(meta)})


def resume(capsys, base, run):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, *train_args(base / "data", run, 4 * STEPS + 8, "--resume"))
    return code, err, before


def assert_refused(capsys, base, run, *words):
    code, err, before = resume(capsys, base, run)
    [line] = error_lines(err)
    assert code == 1 and "Traceback" not in err, err
    assert all(w in line for w in words), line
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # nothing written, nothing moved aside
    return line


def record(meta, **change):
    meta["history"][0].update(change)


# -- D7: the history ----------------------------------------------------------------------------

@pytest.mark.parametrize("change, words", [
    (dict(train_loss=math.nan), ["train_loss", "not a finite number"]),
    (dict(val_psnr=-math.inf), ["val_psnr", "not a finite number"]),
    (dict(lr="fast"), ["lr", "not a number"]),
    (dict(epoch=-3), ["epoch", "not a whole number"]),
    (dict(epoch=1.5), ["epoch", "not a whole number"]),
    (dict(epoch=10**9), ["epoch", "not a whole number"]),
    (dict(images_seen=-1), ["images_seen", "not a whole number"]),
    (dict(step=True), ["step", "not a number"]),
    (dict(train_loss=-0.5), ["train_loss", "below 0"]),
    (dict(val_ssim=[1, 2]), ["val_ssim", "not a number"]),
    (dict(epoch=None), ["epoch", "missing"]),
])
def test_a_history_record_training_cannot_write_is_refused(capsys, base, run, change, words):
    tamper(run, lambda m: record(m, **change))
    line = assert_refused(capsys, base, run, STATE_FILE, *words)
    assert "--overwrite" in line


@pytest.mark.parametrize("history, words", [
    ("none", ["history"]), ([1, 2], ["history"]),
    ([{"epoch": 1, "step": 4}, {"epoch": 2, "step": 2}], ["comes after step"]),
    ([{"epoch": 1, "step": 1}] * 50, ["records for"]),
])
def test_a_history_that_is_no_list_of_records_is_refused(capsys, base, run, history, words):
    def edit(meta):
        meta["history"] = history
    tamper(run, edit)
    assert_refused(capsys, base, run, *words)


def test_check_history_reads_a_legacy_infinite_psnr_as_null():
    """A perfect reconstruction's PSNR is infinite; earlier versions stored it as Infinity."""
    history = check_history([{"epoch": 1, "step": 2, "val_psnr": math.inf}], 2, "s")
    assert history == [{"epoch": 1, "step": 2, "val_psnr": None}]
    with pytest.raises(CheckpointError):
        check_history([{"epoch": 1, "step": 2, "val_psnr": math.nan}], 2, "s")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_metrics_lines_are_strict_json(value):
    line = metrics_line({"epoch": 1, "val_psnr": value, "train_loss": 0.5})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(c)) == {
        "epoch": 1, "val_psnr": None, "train_loss": 0.5}
    assert finite_record({"a": value, "b": 2})["a"] is None


def test_an_intact_state_resumes_and_every_metrics_line_is_strict_json(capsys, base, run):
    code, err, _ = resume(capsys, base, run)
    assert code == 0, err
    lines = (run / METRICS_FILE).read_text().splitlines()
    assert len(lines) == 4  # 3 epochs, then one more (2 steps of 4 images)
    for line in lines:
        json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}"))


def test_an_infinite_psnr_resumed_from_an_earlier_version_is_written_as_null(capsys, base, run):
    tamper(run, lambda m: record(m, val_psnr=math.inf))
    code, err, _ = resume(capsys, base, run)
    assert code == 0, err
    first = json.loads((run / METRICS_FILE).read_text().splitlines()[0],
                       parse_constant=lambda c: pytest.fail(c))
    assert first["val_psnr"] is None


# -- D8: the optimizer state --------------------------------------------------------------------

def _set(key, fill):
    def edit(tensors):
        tensors[key] = fill(tensors[key].clone())
    return edit


@pytest.mark.parametrize("edit, words", [
    (_set("opt.0.exp_avg_sq", lambda t: t.fill_(-1e-3)), ["exp_avg_sq", "negative values"]),
    (_set("opt.3.exp_avg_sq", lambda t: t.view(-1).index_fill_(0, torch.tensor([0]), -5.0)
          .view(t.shape)), ["exp_avg_sq", "negative"]),
    (_set("opt.0.step", lambda t: t.fill_(-4)), ["'step'", "not a whole number from 1"]),
    (_set("opt.0.step", lambda t: t.fill_(1e30)), ["'step'", "not a whole number from 1"]),
    (_set("opt.0.step", lambda t: t.fill_(0)), ["'step'", "not a whole number from 1"]),
    (_set("opt.0.step", lambda t: t.fill_(2.5)), ["'step'", "not a whole number"]),
    (_set("opt.0.step", lambda t: t.fill_(STEPS + 1)), ["'step'", f"{STEPS} steps"]),
    (_set("opt.1.exp_avg", lambda t: t.reshape(-1)[:1].reshape(())), ["exp_avg", "shape"]),
])
def test_an_optimizer_state_adam_cannot_have_made_is_refused(capsys, base, run, edit, words):
    tamper(run, edit_tensors=edit)
    assert_refused(capsys, base, run, STATE_FILE, *words)


def test_an_intact_optimizer_state_passes_the_checks(run):
    from featinv.io.state_checks import check_optimizer_state

    with safe_open(str(run / STATE_FILE), "pt") as f:
        shape = f.get_tensor("opt.0.exp_avg").shape
    param = torch.nn.Parameter(torch.zeros(shape))
    opt = torch.optim.Adam([param])
    param.grad = torch.ones(shape)
    opt.step()
    check_optimizer_state(opt, "opt", 1, "s")
    opt.state[param]["exp_avg_sq"][...] = -1
    with pytest.raises(CheckpointError, match="negative"):
        check_optimizer_state(opt, "opt", 1, "s")


# -- round 9, finding 5: the state's weights and Adam's moments, checked like a decoder's --------

def _first(predicate, fill):
    """Edit the first state tensor (by name) whose name passes ``predicate``."""
    def edit(tensors):
        key = next(k for k in sorted(tensors) if predicate(k))
        tensors[key] = fill(tensors[key].clone())
    return edit


def _conv_weight(prefix):
    return lambda k: k.startswith(prefix) and k.endswith(".weight") and "running" not in k


@pytest.mark.parametrize("edit, words", [
    (_first(_conv_weight("decoder."), lambda t: t.fill_(1e30)),
     ["decoder.", "holds values up to 1e+30", "far beyond what training makes"]),
    (_first(lambda k: k.startswith("decoder.") and k.endswith("running_var"),
            lambda t: t.fill_(-1.0)), ["running_var", "negative variances"]),
    (_set("decoder.feature_std", lambda t: t.fill_(1e-30)), ["feature_std", "holds 1e-30"]),
    (_set("decoder.feature_std", lambda t: t.fill_(0.0)), ["feature_std", "holds 0"]),
    (_set("decoder.feature_std", lambda t: t.fill_(-2.0)), ["feature_std", "holds -2"]),
    (_set("decoder.feature_mean", lambda t: t.fill_(1e30)), ["feature_mean", "holds 1e+30"]),
    (_set("opt.1.exp_avg", lambda t: t.fill_(1e38)),
     ["'exp_avg' holds 1e+38", "more than Adam can make"]),
    (_set("opt.0.exp_avg", lambda t: t.view(-1).index_fill_(0, torch.tensor([0]), 50.0)
          .view(t.shape)), ["'exp_avg' holds 50", "more than Adam can make"]),
], ids=["decoder-weight", "running-var", "std-1e-30", "std-0", "std-negative", "mean-1e30", "exp-avg-1e38", "exp-avg-one-value"])
def test_a_state_whose_weights_training_cannot_make_is_refused(capsys, base, run, edit, words):
    """Resumed, these failed a step later with 'Loss became nan ... Try a lower --lr'."""
    tamper(run, edit_tensors=edit)
    assert_refused(capsys, base, run, STATE_FILE, *words)


def _group(edit):
    def change(meta):
        edit(meta["param_groups"][0])
    return change


@pytest.mark.parametrize("edit, words", [
    (_group(lambda g: g.pop("betas")), "lacks 'betas'"),
    (_group(lambda g: g.pop("eps")), "lacks 'eps'"),
    (_group(lambda g: g.update(params=[0] * len(g["params"]))), "distinct parameter numbers"),
    (_group(lambda g: g.update(params=None)), "distinct parameter numbers"),
    (_group(lambda g: g.update(params=g["params"][:-1])), "distinct parameter numbers"),
    (lambda meta: meta.update(param_groups=[{}, {}]), "not 1 group(s)"),
    (lambda meta: meta.update(param_groups=["x"]), "no object"),
], ids=["no-betas", "no-eps", "params-repeated", "params-null", "params-short", "two-groups",
        "group-text"])
def test_param_groups_training_cannot_write_are_one_line(capsys, base, run, edit, words):
    """Round 10: a missing betas was taken for the run's own (then 'KeyError: betas'); params
    of [0, 0, ...] or null gave Python's AttributeError or TypeError."""
    tamper(run, edit_meta=edit)
    assert_refused(capsys, base, run, STATE_FILE, "optimizer state does not fit", words)


def test_the_weight_average_in_a_state_is_checked_too(capsys, base, tmp_path):
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, *train_args(base / "data", run, 4 * STEPS, "--ema", 0.9))
    assert code == 0, err
    tamper(run, edit_tensors=_first(_conv_weight("ema."), lambda t: t.fill_(-1e9)))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = run_cli(capsys, *train_args(base / "data", run, 4 * STEPS + 8, "--ema", 0.9,
                                               "--resume"))
    [line] = error_lines(err)
    assert code == 1 and "ema." in line and "holds values up to 1e+09" in line, err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_the_moment_bound_holds_for_adam_itself():
    """Adam's own moments stay within moment_bound after any gradients, spiky ones included."""
    from featinv.io.state_checks import check_optimizer_state, moment_bound

    assert moment_bound((0.9, 0.999)) == pytest.approx(7.27, abs=0.01)
    assert moment_bound((0.99, 0.9)) is None  # b1^2 >= b2: unbounded, not checked
    generator = torch.Generator().manual_seed(0)
    for betas in ((0.9, 0.999), (0.5, 0.999)):
        param = torch.nn.Parameter(torch.zeros(1000))
        opt = torch.optim.Adam([param], betas=betas)
        for step in range(1, 300):
            scale = 1e4 if step == 1 else 10.0 ** float(torch.randint(-8, 3, (), generator=generator))
            param.grad = scale * torch.randn(1000, generator=generator).sign() \
                if step % 7 else torch.zeros(1000)
            opt.step()
            check_optimizer_state(opt, "opt", step, "s")


# -- round 11, E5: optimizer states that made the optimizer fail later; E8: tensor types ----------

def _groups(edit):
    def change(meta):
        for group in meta["param_groups"]:
            edit(group)
    return change


def _drop(key):
    def edit(tensors):
        del tensors[key]
    return edit


class TestOptimizerStateThatFailsLater:
    """Each of these passed the checks and failed at the first step (or in the first check)
    with Python's AttributeError, KeyError or RuntimeError instead of the one-line refusal."""

    @pytest.mark.parametrize("edit_meta, edit_tensors, words", [
        (_groups(lambda g: g.update(params=[i + 1000 for i in g["params"]])), None,
         "distinct parameter numbers for the run's"),
        (_groups(lambda g: g.update(params=[-i - 1 for i in g["params"]])), None,
         "distinct parameter numbers for the run's"),
        (_groups(lambda g: g.update(params=g["params"][::-1])), None, "in order"),
        (None, _drop("opt.3.exp_avg"), "the state of parameter 3 lacks 'exp_avg'"),
        (None, _drop("opt.0.step"), "the state of parameter 0 lacks 'step'"),
        (None, lambda t: t.update({"opt.2.bogus": t["opt.2.step"].clone()}),
         "the state of parameter 2 holds 'bogus'"),
        (_groups(lambda g: g.update(differentiable=True)), None, "its differentiable True"),
        (_groups(lambda g: g.update(fused="x")), None, "its fused 'x'"),
        (_groups(lambda g: g.update(capturable=None)), None, "its capturable None"),
        (_groups(lambda g: g.update(lr="fast")), None, "its lr 'fast' is no learning rate"),
        (_groups(lambda g: g.update(initial_lr=-1e30)), None, "its initial_lr -1e+30"),
        (_groups(lambda g: g.update(weight_decay=False)), None, "its weight_decay False"),
        (_groups(lambda g: g.update(lr=10**400)), None,  # round 12 (D6): an OverflowError
         "its lr a whole number of 401 digits is no learning rate"),
    ], ids=["params-beyond", "params-negative", "params-reversed", "no-exp-avg", "no-step",
            "extra-key", "differentiable", "fused-text", "capturable-null", "lr-text",
            "initial-lr-negative", "weight-decay-false", "lr-10**400"])
    def test_is_refused_in_one_line(self, capsys, base, run, edit_meta, edit_tensors, words):
        tamper(run, edit_meta, edit_tensors)
        assert_refused(capsys, base, run, STATE_FILE, "optimizer state does not fit this run",
                       words, "Start a new run (--overwrite), or restore the state from a backup.")

    def test_missing_param_groups_are_named(self, capsys, base, run):
        """Round 12 (D10): they were blamed on a run with other losses."""
        tamper(run, lambda meta: meta.pop("param_groups"))
        assert_refused(capsys, base, run, "its metadata has no 'param_groups'",
                       "Start a new run (--overwrite)")

    def test_kernel_flags_of_another_machine_are_replaced_by_this_runs(self, capsys, base, run):
        """A GPU run's state (capturable, foreach) resumes on the CPU: the flags say how that
        machine computed the update, not what the run is."""
        tamper(run, _groups(lambda g: g.update(capturable=True, foreach=True, fused=None)))
        code, err, _ = resume(capsys, base, run)
        assert code == 0, err


def _keep(keep):
    def edit(tensors):
        for key in [k for k in tensors if k.startswith("opt.") and not keep(k)]:
            del tensors[key]
    return edit


class TestForgedStateThatResumed:
    """Round 12 (D7): these resumed with exit 0, then trained as another run: Adam restarted
    from nothing mid-schedule, or divided every update by the root of 3e38 and stood still."""

    @pytest.mark.parametrize("edit, words", [
        (_keep(lambda k: False), "no state for any of the run's"),
        (_keep(lambda k: int(k.split(".")[1]) % 2 == 0), f"parameter 1 has no state after {STEPS}"),
        (_keep(lambda k: not k.startswith("opt.5.")), f"parameter 5 has no state after {STEPS}"),
        (lambda t: t.update({k: v.clone().fill_(3e38) for k, v in t.items()
                             if k.endswith("exp_avg_sq")}), "of parameter 0 holds 3e+38"),
        (_set("opt.4.exp_avg_sq", lambda t: t.view(-1).index_fill_(0, torch.tensor([0]), 2e12)
              .view(t.shape)), "exp_avg_sq of parameter 4 holds 2e+12"),
    ], ids=["all-gone", "half-gone", "one-gone", "squares-3e38", "one-square-2e12"])
    def test_is_refused_in_one_line(self, capsys, base, run, edit, words):
        tamper(run, edit_tensors=edit)
        assert_refused(capsys, base, run, "optimizer state does not fit this run", words,
                       "Start a new run (--overwrite), or restore the state from a backup.")

    def test_an_fp16_run_may_have_stepped_nothing_yet(self, capsys, base, run):
        """GradScaler skips the steps whose gradients overflow: no state at all is genuine."""
        tamper(run, lambda m: m["config"].update(precision="fp16"), _keep(lambda k: False))
        code, err, _ = resume(capsys, base, run)
        assert code == 0, err
        tamper(run, lambda m: m["config"].update(precision="fp16"),
               _keep(lambda k: not k.startswith("opt.0.")))
        assert_refused(capsys, base, run, "parameter 0 has no state")

    def test_a_parameter_without_gradients_needs_no_state(self):
        from featinv.io.optimizer_state import load_optimizer, optimizer_tensors

        used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
        opt = torch.optim.Adam([used, unused])
        used.grad = torch.ones(3)
        opt.step()
        tensors, groups = optimizer_tensors(opt)
        load_optimizer(torch.optim.Adam([used, unused]), tensors, groups, step=1,
                       updated=[used])  # a plugin network's weight its output does not use
        with pytest.raises(ValueError, match="parameter 1 has no state after 1 steps"):
            load_optimizer(torch.optim.Adam([used, unused]), tensors, groups, step=1,
                           updated=[used, unused])


class TestStateTensorOfAnotherType:
    """A state tensor of a type training never writes was cast on load (an int32 moment, a
    float16 weight) or failed in the kernels."""

    @pytest.mark.parametrize("key, dtype, words", [
        ("opt.0.exp_avg", torch.float64, "stored as float64"),
        ("opt.0.step", torch.int64, "stored as int64"),
        ("decoder.feature_std", torch.float16, "stored as float16"),
    ])
    def test_is_refused_before_anything_is_read(self, capsys, base, run, key, dtype, words):
        tamper(run, edit_tensors=_set(key, lambda t: t.to(dtype)))
        line = assert_refused(capsys, base, run, key, words, "a type featinv never writes")
        assert "--overwrite" in line
