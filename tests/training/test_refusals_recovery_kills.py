"""Nothing lost to a kill, a full disk or a diverging run (issue 24, D1-D3, D9, D10, D16, D17).

A checkpoint is complete only when its decoder and its training state are both in place and
carry the same checkpoint id; the run an ``--overwrite`` run replaces is deleted only once the
new one has a complete checkpoint of weights that reconstruct images (finite), and is put back
whenever the new run stops, fails or is killed before (a lone decoder or state it left is
discarded). Whatever a killed save left (temporary files, staging folders) is removed by the
next run that takes the folder. The messages around these cases say what is kept.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError

import featinv.io.checkpoint as ckpt
from helpers import digest, error_lines, quiet, run_cli, saved_step, write_images
from featinv.errors import FeatinvError, Interrupted
from featinv.io.checkpoint import CHECKPOINT_KEY, DECODER_FILE, STATE_FILE
from featinv.training.loop import Run, TrainConfig, train
from featinv.training.run_folder import LOCK_FILE, MOVING, REPLACED

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def config(data, out, **kw) -> TrainConfig:
    base = dict(feature="hog", data=str(data), out=str(out), image_size=16, epochs=1,
                batch_size=4, workers=0, device="cpu", precision="fp32", limit=8, threads=1)
    return TrainConfig(**{**base, **kw})


def cli_args(data, out, *extra) -> list[str]:
    return ["train", "-f", "hog", "--data", str(data), "--out", str(out), "--image-size", "16",
            "--batch-size", "4", "--workers", "0", "--device", "cpu", "--precision", "fp32",
            "--threads", "1", "--limit", "8", *extra]


def ids(folder: Path) -> tuple[str, str]:
    """The checkpoint ids of a folder's decoder and training state."""
    decoder = ckpt.read_meta(folder / DECODER_FILE)
    state = ckpt.read_meta(folder / STATE_FILE, ckpt.STATE_FORMAT)
    return decoder["progress"][CHECKPOINT_KEY], state[CHECKPOINT_KEY]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run (decoder, state, metrics, a preview) at step 2, one at step 4, and data."""
    root = tmp_path_factory.mktemp("kills")
    write_images(root / "data", 8, size=(24, 20))
    write_images(root / "val", 2, size=(24, 20), seed=1)
    run = root / "run"
    train(config(root / "data", run, val=str(root / "val")), log=quiet)
    later = root / "later"
    shutil.copytree(run, later)
    train(config(root / "data", later, val=str(root / "val"), epochs=2), resume=True, log=quiet)
    return root


@pytest.fixture
def old_run(trained, tmp_path):
    """A copy of the finished run to be protected, and its digest."""
    run = tmp_path / "run"
    shutil.copytree(trained / "run", run)
    return run, digest(run)


# -- D1: killed in the first checkpoint of a run that replaces another ---------------------------

KILLER = """
import os, signal, sys
import featinv.io.checkpoint as ckpt
where = sys.argv.pop(1)
real_replace, real_save_file = os.replace, ckpt.save_file

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "decoder":  # the state is written (staged), the decoder not yet
    ckpt.save_decoder = lambda *a, **k: die()
elif where == "decoder_half_written":  # a partial temporary file of the decoder
    def save_file(tensors, path, metadata=None):
        if "decoder" in os.path.basename(path):
            with open(path, "wb") as f:
                f.write(b"partial")
            die()
        return real_save_file(tensors, path, metadata=metadata)
    ckpt.save_file = save_file
elif where == "between_renames":  # the state is in place, the decoder not
    def replace(src, dst):
        if os.path.basename(dst) == "decoder.safetensors" and ".featinv-stage." in str(src):
            die()
        return real_replace(src, dst)
    os.replace = replace
from featinv.cli.main import main
main(sys.argv[1:])
"""


def killed_run(where: str, *args) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", KILLER, where, *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return done


@pytest.mark.slow
@pytest.mark.parametrize("where", ["decoder", "decoder_half_written", "between_renames"])
@pytest.mark.parametrize("then", ["train", "resume"])
def test_killed_in_its_first_checkpoint_a_replacing_run_gives_the_old_run_back(
        trained, old_run, where, then):
    """SIGKILL between (or while) writing the two files of an --overwrite run's first
    checkpoint: the next train saw a decoder, took the backup for stale and deleted the old run;
    now the lone half is discarded and the old run put back (and --resume continues it)."""
    run, before = old_run
    killed_run(where, *cli_args(trained / "data", run, "--overwrite", "--save-every", "1",
                                "--seed", "3"))
    assert (run / REPLACED / DECODER_FILE).is_file()  # the old run waits there
    messages = []
    if then == "train":
        with pytest.raises(FeatinvError, match="already holds a run"):
            train(config(trained / "data", run), log=messages.append)
        assert digest(run) == before
    else:
        train(config(trained / "data", run, val=str(trained / "val"), epochs=2), resume=True,
              log=messages.append)
        assert saved_step(run) == 4  # the old run (step 2), continued
    assert any("put back the run" in m for m in messages), messages
    assert not (run / REPLACED).exists()
    assert not [p for p in run.iterdir() if p.name.startswith(".featinv-")
                and p.name != LOCK_FILE]


def lone_half(trained, run: Path, which: str) -> None:
    """What a killed replacing run may leave in ``run`` beside its backup."""
    later = trained / "later"
    if which in ("decoder", "mixed"):
        shutil.copy(later / DECODER_FILE, run / DECODER_FILE)
    if which in ("state", "mixed"):
        shutil.copy((trained / "run" if which == "mixed" else later) / STATE_FILE,
                    run / STATE_FILE)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "step": 2}\n')


@pytest.mark.parametrize("which", ["decoder", "state", "mixed"])
@pytest.mark.parametrize("listed", [True, False])
def test_a_half_checkpoint_beside_a_backup_is_discarded_for_the_old_run(trained, old_run, which,
                                                                       listed):
    """A lone decoder, a lone state or a decoder and a state of two checkpoints beside
    .featinv-replaced: the killed run's, discarded; the old run comes back. ``listed``: the
    backup holds the list of what was moved (without it, an older featinv's backup, only files
    the backup also holds are taken for the killed run's)."""
    run, before = old_run
    backup = run / REPLACED
    backup.mkdir()
    names = sorted(p.name for p in run.iterdir() if p.is_file())
    if listed:
        (backup / MOVING).write_text(json.dumps(names))
    for name in names:
        os.replace(run / name, backup / name)
    lone_half(trained, run, which)
    messages = []
    with pytest.raises(FeatinvError, match="already holds a run"):
        train(config(trained / "data", run), log=messages.append)
    said = [m for m in messages if "put back the run" in m]
    assert len(said) == 1 and "discarded" in said[0], messages
    assert digest(run) == before and not backup.exists()


@pytest.mark.parametrize("moved", [0, 1, 3])
def test_killed_while_moving_the_old_run_aside_nothing_of_it_is_deleted(trained, old_run, moved):
    """Killed while replace_previous moved the old run's files one by one: the ones still in
    the folder are the old run's, not the new one's; all come back, none is deleted."""
    run, before = old_run
    backup = run / REPLACED
    backup.mkdir()
    names = [DECODER_FILE, STATE_FILE, "metrics.jsonl", "val_epoch001.png"]
    (backup / MOVING).write_text(json.dumps(names))
    for name in names[:moved]:
        os.replace(run / name, backup / name)
    with pytest.raises(FeatinvError, match="already holds a run"):
        train(config(trained / "data", run), log=quiet)
    assert digest(run) == before and not backup.exists()


@pytest.mark.slow
def test_a_complete_first_checkpoint_makes_the_backup_stale(trained, old_run):
    """Killed after its first checkpoint was complete, before the backup was deleted: the next
    run deletes the backup and sees the new run."""
    run, _ = old_run
    killed = run.parent / "killed"
    train(config(trained / "data", killed, seed=5), log=quiet)
    shutil.copytree(run, killed / REPLACED)  # as a kill leaves it
    new = digest(killed)
    lines = []
    with pytest.raises(FeatinvError, match="already holds a run"):
        train(config(trained / "data", killed), log=lines.append)
    assert not (killed / REPLACED).exists() and digest(killed) == new
    # round 9: said as what it is, not as a temporary file
    assert any("deleted the previous run" in line for line in lines), lines


def test_a_second_signal_after_a_complete_checkpoint_says_the_new_run_replaced_the_old(
        trained, old_run):
    """Round 9: a second Ctrl-C between a replacing run's complete first checkpoint and the
    deletion of the old run said the old run would be put back; it says what will happen."""
    from featinv.training.run_folder import RunFolder

    run, _ = old_run
    folder = run.parent / "stopped"
    train(config(trained / "data", folder, seed=5), log=quiet)
    shutil.copytree(run, folder / REPLACED)
    stopped = RunFolder(folder, log=quiet)
    stopped._moved = [DECODER_FILE, STATE_FILE]  # as replace_previous leaves it
    message = stopped.killed_message()
    assert "is complete and replaces the previous run" in message and "move it" in message
    (folder / STATE_FILE).unlink()  # no complete checkpoint: the old run is put back
    assert "puts it back" in stopped.killed_message()


SECOND_SIGNAL = """
import os, signal, sys
import featinv.io.checkpoint as ckpt
from featinv.training.loop import Run
where = sys.argv.pop(1)

def twice():
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGINT)

if where == "training":
    real = Run._train_step
    def step(self, *a):
        if self.step == 3:
            twice()
        return real(self, *a)
    Run._train_step = step
else:  # while the decoder of a checkpoint is written
    real_save_decoder = ckpt.save_decoder
    def save_decoder(*a, **k):
        twice()
        return real_save_decoder(*a, **k)
    ckpt.save_decoder = save_decoder
from featinv.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("case", ["replacing", "checkpointed", "first_save"])
def test_a_second_ctrl_c_ends_at_once_and_says_what_is_kept(trained, old_run, case):
    """A second Ctrl-C ends the run at once (no saving), as before, but no longer silently: one
    line says what is kept, and that is what the folder then holds."""
    run, before = old_run
    out = run if case == "replacing" else run.parent / "fresh"
    args = cli_args(trained / "data", out, "--epochs", "3",
                    *(["--overwrite"] if case == "replacing" else []),
                    *(["--save-every", "2"] if case == "checkpointed" else []))
    where = "first_save" if case == "first_save" else "training"
    done = subprocess.run([sys.executable, "-c", SECOND_SIGNAL, where, *args], env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGINT, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "second SIGINT" in line]
    assert line.startswith("Stopped at once by a second SIGINT, without saving;"), line
    if case == "replacing":
        assert REPLACED in line and "next featinv train" in line
        with pytest.raises(FeatinvError, match="already holds a run"):
            train(config(trained / "data", run), log=quiet)
        assert digest(run) == before
    elif case == "checkpointed":
        assert "last checkpoint" in line and "--resume" in line
        assert saved_step(out) == 2
        train(config(trained / "data", out, epochs=3), resume=True, log=quiet)
        assert saved_step(out) == 6
    else:
        assert "no checkpoint had been written yet" in line
        assert not (out / DECODER_FILE).exists() and not (out / STATE_FILE).exists()
        train(config(trained / "data", out), log=quiet)  # starts over, the stage removed
        assert saved_step(out) == 2
        assert not [p for p in out.iterdir() if p.name.startswith(".featinv-stage.")]


# -- D2: a full disk while a checkpoint is written ------------------------------------------------

def fail_on(monkeypatch, which: str, kind: str, after: int = 0) -> None:
    """Make writing ``which`` (decoder or train_state) fail, from its ``after``-th write on."""
    real, calls = ckpt.save_file, []

    def save_file(tensors, path, metadata=None):
        if which in os.path.basename(path):
            calls.append(path)
            if len(calls) > after:
                if kind == "oserror":
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                raise SafetensorError("Error while serializing: I/O error: No space left on "
                                      "device (os error 28)")
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ckpt, "save_file", save_file)


@pytest.mark.parametrize("which", ["decoder", "train_state"])
@pytest.mark.parametrize("kind", ["oserror", "safetensors"])
def test_a_full_disk_in_the_first_checkpoint_leaves_no_file_of_it(trained, tmp_path,
                                                                   monkeypatch, which, kind):
    """The disk fills while the first checkpoint is written (either file): a lone decoder was
    left, and both a rerun and --resume were refused. Nothing of it is left now."""
    out = tmp_path / "run"
    fail_on(monkeypatch, which, kind)
    with pytest.raises(FeatinvError, match="No space left on device.*start again"):
        train(config(trained / "data", out), log=quiet)
    left = sorted(p.name for p in out.iterdir())
    assert left == ["metrics.jsonl"], left  # no decoder, state, temporary file or stage
    monkeypatch.undo()
    train(config(trained / "data", out), resume=True, log=quiet)  # starts over
    assert saved_step(out) == 2


@pytest.mark.parametrize("which", ["decoder", "train_state"])
def test_a_full_disk_in_a_later_checkpoint_keeps_the_previous_pair(trained, tmp_path,
                                                                   monkeypatch, which):
    out = tmp_path / "run"
    shutil.copytree(trained / "run", out)
    before = {n: (out / n).read_bytes() for n in (DECODER_FILE, STATE_FILE)}
    fail_on(monkeypatch, which, "safetensors")
    with pytest.raises(FeatinvError, match="previous checkpoint there is intact"):
        train(config(trained / "data", out, val=str(trained / "val"), epochs=2), resume=True,
              log=quiet)
    assert {n: (out / n).read_bytes() for n in before} == before
    a, b = ids(out)
    assert a == b
    monkeypatch.undo()
    train(config(trained / "data", out, val=str(trained / "val"), epochs=2), resume=True,
          log=quiet)
    assert saved_step(out) == 4


def test_a_failed_rename_of_the_decoder_takes_back_a_first_state(trained, tmp_path,
                                                                monkeypatch):
    """If the decoder cannot be put in place after the state was (a first checkpoint), the
    lone state is removed too."""
    import featinv.training.run_checkpoint as rc

    real = os.replace

    def replace(src, dst):
        if Path(dst).name == DECODER_FILE and ".featinv-stage." in str(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(rc.os, "replace", replace)
    out = tmp_path / "run"
    with pytest.raises(FeatinvError, match="Could not write the checkpoint"):
        train(config(trained / "data", out), log=quiet)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


def test_both_files_of_a_checkpoint_carry_one_id(trained):
    first, later = ids(trained / "run"), ids(trained / "later")
    assert first[0] == first[1] and later[0] == later[1] and first[0] != later[0]


@pytest.mark.parametrize("decoder_from, state_from", [("run", "later"), ("later", "run")])
def test_a_decoder_and_a_state_of_two_checkpoints_are_recognised(trained, tmp_path,
                                                                 decoder_from, state_from):
    """An older decoder beside a newer state (a kill between the two renames): --resume
    continues from the state and says the decoder is rewritten. A newer decoder beside an older
    state (nothing featinv writes; files copied by hand): --resume would replace it, refused."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(trained / decoder_from / DECODER_FILE, out / DECODER_FILE)
    shutil.copy(trained / state_from / STATE_FILE, out / STATE_FILE)
    messages = []
    cfg = config(trained / "data", out, val=str(trained / "val"), epochs=3)
    if decoder_from == "run":
        train(cfg, resume=True, log=messages.append)
        assert any("from an earlier checkpoint (step 2)" in m and "(step 4)" in m
                   for m in messages), messages
        assert saved_step(out) == 6
    else:
        with pytest.raises(FeatinvError, match="decoder.safetensors is from step 4, "
                                               "train_state.safetensors from step 2"):
            train(cfg, resume=True, log=messages.append)
        assert (out / DECODER_FILE).read_bytes() == (trained / "later" / DECODER_FILE
                                                     ).read_bytes()


def test_a_decoder_and_a_state_of_one_step_but_two_runs_are_refused(trained, tmp_path):
    """Round 9: two runs' files at the same step (different checkpoint ids) were taken for a
    kill's leftovers ("from an earlier checkpoint (step 2) than ... (step 2)"); no kill leaves
    them, so --resume refuses and says what to do."""
    other = tmp_path / "other"
    train(config(trained / "data", other, val=str(trained / "val"), seed=7), log=quiet)
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(other / DECODER_FILE, out / DECODER_FILE)
    shutil.copy(trained / "run" / STATE_FILE, out / STATE_FILE)
    before = (out / DECODER_FILE).read_bytes(), (out / STATE_FILE).read_bytes()
    cfg = config(trained / "data", out, val=str(trained / "val"), epochs=3)
    with pytest.raises(FeatinvError, match="both from step 2 but of two different checkpoints"):
        train(cfg, resume=True, log=quiet)
    assert ((out / DECODER_FILE).read_bytes(), (out / STATE_FILE).read_bytes()) == before


# -- D3: stopped or diverged before the first real checkpoint -------------------------------------

def signal_at(monkeypatch, step: int, signum: int) -> None:
    real = Run._train_step

    def train_step(self, *args):
        if self.step == step:
            os.kill(os.getpid(), signum)
        return real(self, *args)

    monkeypatch.setattr(Run, "_train_step", train_step)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_replacing_run_stopped_before_its_first_checkpoint_saves_nothing(
        trained, old_run, monkeypatch, signum, code):
    """Ctrl-C or SIGTERM before the first scheduled checkpoint of an --overwrite run saved the
    barely trained run and deleted the old one, while saying it was put back."""
    run, before = old_run
    signal_at(monkeypatch, 3, signum)
    messages = []
    with pytest.raises(Interrupted, match="before this run's first checkpoint: nothing of it "
                                          "is saved, and the previous run .* is put back") as info:
        train(config(trained / "data", run, epochs=3, overwrite=True), log=messages.append)
    assert info.value.exit_code == code
    assert digest(run) == before and not (run / REPLACED).exists()
    assert not any("deleted the previous run" in m for m in messages)


@pytest.mark.parametrize("case", ["fresh", "after_first_checkpoint"])
def test_a_run_stopped_with_nothing_to_give_back_saves(trained, old_run, monkeypatch, case):
    """A fresh folder (nothing replaced), or a replacing run past its first checkpoint: a
    signal saves the run and --resume continues it."""
    run, _ = old_run
    out = run.parent / "fresh" if case == "fresh" else run
    signal_at(monkeypatch, 3, signal.SIGTERM)
    with pytest.raises(Interrupted, match="at step 4/6; saved"):
        train(config(trained / "data", out, epochs=3, overwrite=case != "fresh",
                     save_every=2 if case != "fresh" else 0), log=quiet)
    assert saved_step(out) == 4 and not (out / REPLACED).exists()
    monkeypatch.undo()
    train(config(trained / "data", out, epochs=3), resume=True, log=quiet)
    assert saved_step(out) == 6


@pytest.mark.parametrize("lr, extra", [(1e29, {}), (1e12, {}), (1e29, {"ema": 0.9})])
@pytest.mark.parametrize("replacing", [True, False])
def test_weights_that_reconstruct_nothing_are_never_saved(trained, old_run, lr, extra,
                                                          replacing):
    """--lr 1e29 with a checkpoint at step 1: the weights are finite (about 1e28) but every
    reconstruction is not; that checkpoint was written, the old run deleted, and the run failed
    at step 2 on a NaN loss. Such weights are refused, the old run put back."""
    run, before = old_run
    out = run if replacing else run.parent / "fresh"
    with pytest.raises(FeatinvError, match="NaN or infinite") as info:
        train(config(trained / "data", out, epochs=3, overwrite=replacing, lr=lr, save_every=1,
                     **extra), log=quiet)
    if replacing:
        assert "previous run" in str(info.value) and "put back" in str(info.value)
        assert digest(run) == before
    else:
        assert not (out / DECODER_FILE).exists() and not (out / STATE_FILE).exists()
    assert not (out / REPLACED).exists()


@pytest.mark.parametrize("replacing", [True, False])
def test_weights_that_reconstruct_saturated_noise_are_never_saved(trained, old_run, replacing):
    """Round 10: --lr 1 gave finite weights whose pictures are far outside [0, 1] (up to 1e4);
    train saved them with exit code 0, deleting the run they replaced, and invert, evaluate and
    pack then refused the decoder. train now refuses them as invert would."""
    run, before = old_run
    out = run if replacing else run.parent / "fresh"
    with pytest.raises(FeatinvError, match=r"not saved: they reconstruct the training images "
                       r"with \d+% of the values beyond \[-1, 2\].*Try a lower --lr") as info:
        train(config(trained / "data", out, epochs=2, overwrite=replacing, lr=1.0), log=quiet)
    if replacing:
        assert "put back" in str(info.value) and digest(run) == before
    else:
        assert not (out / DECODER_FILE).exists() and not (out / STATE_FILE).exists()


# -- D9: what killed saves leave --------------------------------------------------------------------

def test_featinvs_own_temporaries_are_removed_when_the_folder_is_claimed(trained, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    ours = [".featinv-tmp.decoder.safetensors.k3j_x9.tmp", ".decoder.safetensors.ab12cd.tmp",
            ".train_state.safetensors.x_y9z.tmp", ".metrics.jsonl.q1w2e3.tmp",
            ".featinv-tmp.val_epoch001.png.zz.tmp"]
    for name in ours:
        (out / name).write_bytes(b"partial")
    (out / ".featinv-stage.abc").mkdir()
    (out / ".featinv-stage.abc" / STATE_FILE).write_bytes(b"partial")
    (out / ".featinv-tmp.link.tmp").symlink_to(outside)
    theirs = [".notes.tmp", ".hidden", "mine.tmp", ".decoder.safetensors.bak"]
    for name in theirs:
        (out / name).write_text("theirs")
    messages = []
    train(config(trained / "data", out), log=messages.append)
    assert any("removed 7 unfinished temporary file(s)" in m for m in messages), messages
    names = {p.name for p in out.iterdir()}
    assert names >= set(theirs) and not names & {*ours, ".featinv-stage.abc", ".featinv-tmp.link.tmp"}
    assert outside.read_text() == "keep"


def test_temporary_files_are_named_as_featinvs(tmp_path):
    from featinv.io.files import TEMP_PREFIX, atomic_write

    seen = []
    atomic_write(tmp_path / "x.json", lambda tmp: (seen.append(Path(tmp).name),
                                                   Path(tmp).write_text("{}")))
    assert seen[0].startswith(TEMP_PREFIX + "x.json.") and seen[0].endswith(".tmp")


# -- D10: --out through a broken link -------------------------------------------------------------

@pytest.mark.parametrize("layout", ["out", "parent", "loop"])
def test_out_through_a_broken_link_is_one_line(tmp_path, capsys, layout):
    write_images(tmp_path / "data", 4, size=(24, 20))
    if layout == "loop":
        (tmp_path / "a").symlink_to(tmp_path / "b")
        (tmp_path / "b").symlink_to(tmp_path / "a")
        out, words = tmp_path / "a", "in a loop of links"
    else:
        (tmp_path / "link").symlink_to(tmp_path / "gone")
        out = tmp_path / "link" if layout == "out" else tmp_path / "link" / "run"
        words = "whose target is missing"
    code, _, err = run_cli(capsys, *cli_args(tmp_path / "data", out, "--epochs", "1"))
    [line] = error_lines(err)
    assert code == 1 and words in line and "choose another --out or fix the link" in line, err
    assert "File exists" not in err and not (tmp_path / "gone").exists()


# -- D16: readers of a folder whose run waits in .featinv-replaced --------------------------------

@pytest.mark.parametrize("command", ["pack", "invert"])
@pytest.mark.parametrize("left", ["backup", "lone_state"])
def test_pack_and_invert_say_where_the_run_is(trained, tmp_path, capsys, command, left):
    out = tmp_path / "run"
    if left == "backup":
        shutil.copytree(trained / "run", out / REPLACED)
    else:
        out.mkdir()
        shutil.copy(trained / "run" / STATE_FILE, out / STATE_FILE)
    args = (["pack", out, "-o", tmp_path / "p.safetensors"] if command == "pack" else
            ["invert", "-c", out, "skimage:coffee", "-o", tmp_path / "o"])
    code, _, err = run_cli(capsys, *args)
    [line] = error_lines(err)
    assert code == 1
    if left == "backup":
        assert REPLACED in line and "next 'featinv train'" in line and "by hand" in line, line
    else:
        assert "train_state.safetensors but no decoder.safetensors" in line
        assert "--resume" in line


def test_the_readers_spell_the_run_files_as_training_does():
    from featinv.inversion import sources

    assert (sources.RUN_FILE, sources.RUN_STATE, sources.RUN_REPLACED) == \
        (DECODER_FILE, STATE_FILE, REPLACED)


# -- D17: a lock copied with its folder -----------------------------------------------------------

@pytest.fixture
def live_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def write_lock(folder: Path, pid: int, identity: bool = True) -> None:
    from featinv.training.run_lock import _started, folder_identity

    folder.mkdir(exist_ok=True)
    lock = {"pid": pid, "host": socket.gethostname(), "started": _started(pid),
            **(folder_identity(folder) if identity else {})}
    (folder / LOCK_FILE).write_text(json.dumps(lock))


@pytest.mark.parametrize("how", ["cp -a", "copytree"])
def test_a_lock_copied_with_its_folder_is_stale_in_the_copy(trained, tmp_path, live_process,
                                                           how):
    """cp -a of a folder whose run is training: the copy was 'in use by process N' (the
    original's). The lock names its folder; in the copy it is taken over."""
    original, copy = tmp_path / "run", tmp_path / "copy"
    write_lock(original, live_process.pid)
    if how == "cp -a":
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
    else:
        shutil.copytree(original, copy)
    train(config(trained / "data", copy), log=quiet)
    assert saved_step(copy) == 2
    with pytest.raises(FeatinvError, match=f"process {live_process.pid}"):
        train(config(trained / "data", original), log=quiet)  # the original stays locked


@pytest.mark.parametrize("case", ["renamed", "no_identity"])
def test_a_lock_still_holds_its_own_folder(trained, tmp_path, live_process, case):
    """A folder renamed while its run trains is still that run's; a lock from an older featinv
    (no folder in it) is still respected."""
    folder = tmp_path / "run"
    write_lock(folder, live_process.pid, identity=case != "no_identity")
    if case == "renamed":
        folder = folder.rename(tmp_path / "moved")
    with pytest.raises(FeatinvError, match=f"process {live_process.pid}"):
        train(config(trained / "data", folder), log=quiet)
