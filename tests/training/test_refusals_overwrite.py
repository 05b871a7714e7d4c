"""A typo never deletes a trained run (issue 24, defect 1).

``--overwrite`` deletes nothing until the command has checked everything it can (data,
representation and its parameters, losses, ``--init-from``) *and* the new run has written its
first checkpoint: until then the old run is moved aside into ``OUT/.featinv-replaced`` and put
back if the new run stops, fails or is killed before that checkpoint. Fine-tuning a run in place
(``--init-from RUN --out RUN --overwrite``) works.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import digest, error_lines, quiet, run_cli, write_images
from featinv.errors import FeatinvError
from featinv.training.loop import STATE_FILE, Run, TrainConfig, train
from featinv.training.distributed import world_from_env
from featinv.training.run_folder import LOCK_FILE, REPLACED

RUN_FILES = ("decoder.safetensors", STATE_FILE, "metrics.jsonl", "val_epoch001.png")


def config(data, out, **kw) -> TrainConfig:
    base = dict(feature="hog", data=str(data), out=str(out), image_size=16, epochs=1,
                batch_size=4, workers=0, device="cpu", precision="fp32", limit=8)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished run (decoder, state, metrics, preview) to be protected, and its data."""
    root = tmp_path_factory.mktemp("overwrite")
    write_images(root / "data", 8, size=(24, 20))
    write_images(root / "val", 2, size=(24, 20), seed=1)
    run = root / "run"
    train(config(root / "data", run, val=str(root / "val")), log=quiet)
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    return root, run, digest(run)


def cli_args(root, run, *extra):
    """The run's command; an option in ``extra`` replaces the base's of that name (a repeated
    option of one value is refused)."""
    base = {"-f": "hog", "--data": root / "data", "--out": run, "--image-size": "16",
            "--epochs": "1", "--batch-size": "4", "--workers": "0", "--device": "cpu",
            "--precision": "fp32", "--limit": "8"}
    rest, extra = [], list(extra)
    while extra:
        option = {"--feature": "-f"}.get(str(extra[0]), str(extra[0]))
        if option in base and len(extra) > 1:
            base[option] = extra[1]
            extra = extra[2:]
        else:
            rest.append(extra.pop(0))
    return ["train", *[x for pair in base.items() for x in pair], "--overwrite", *rest]


@pytest.mark.slow
@pytest.mark.parametrize("typo", [
    ("--data", "nosuch"),                       # a missing --data
    ("-p", "cell_size=0"),                      # a parameter the representation refuses
    ("-p", "nosuch=1"),                         # a parameter it does not have
    ("--loss", "pixel,feature", "--comparator", "nosuch"),   # an unknown comparator
    ("--loss", "pixel,feature", "--comparator", "lbp"),      # one that cannot be a comparator
    ("--init-from", "nosuch.safetensors"),      # a missing --init-from
    ("--init-from", "lbp"),                     # a decoder of another representation
    ("--val", "VAL1"),                          # a validation folder of one image
    ("--feature", "hgo"),                       # a misspelled representation
    ("--image-size", "100000"),                 # an impossible size
])
def test_a_typo_with_overwrite_keeps_the_run(trained, tmp_path, capsys, typo):
    root, run, before = trained
    if "VAL1" in typo:
        write_images(tmp_path / "val1", 1)
        typo = ("--val", tmp_path / "val1")
    code, _, err = run_cli(capsys, *cli_args(root, run, *typo))
    assert code in (1, 2), err
    assert error_lines(err) or "Usage" in err, err
    assert digest(run) == before, "the run was changed by a command that failed its checks"
    assert not (run / REPLACED).exists() and not (run / LOCK_FILE).exists()


def test_a_run_that_fails_before_its_first_checkpoint_puts_the_old_one_back(trained, capsys):
    """The new run diverges (NaN loss) before it saves anything: the old run is back."""
    root, run, before = trained
    code, _, err = run_cli(capsys, *cli_args(root, run, "--lr", "1e30", "--log-every", "1",
                                              "--epochs", "3"))
    assert code == 1 and "put back" in err, err
    assert digest(run) == before
    assert not (run / REPLACED).exists()


def test_interrupted_before_training_puts_the_old_run_back(trained):
    root, run, before = trained
    with Run(config(root / "data", run, overwrite=True), False, quiet, world_from_env()) as r:
        assert (run / REPLACED / "decoder.safetensors").exists()  # moved aside, not deleted
        assert not (run / "decoder.safetensors").exists()
        r.stop.signum = signal.SIGINT
        with pytest.raises(FeatinvError, match="before training started"):
            r.fit()
    assert digest(run) == before


def test_a_signal_while_the_images_are_decoded_stops_at_once_and_puts_the_old_run_back(
        trained, monkeypatch):
    """Round 7: Ctrl-C or SIGTERM while the training images were decoded into memory waited
    for the whole decoding (minutes for a large --data) before 'Interrupted ... before training
    started'. The request is now checked after each decoded batch."""
    import featinv.training.data as data_module
    from featinv.errors import Interrupted

    root, run, before = trained
    batches, real = [], data_module.MemoryImages

    def decoding(images, device, workers=0, progress=None):
        def update(count):
            batches.append(count)
            if len(batches) == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives during the decoding
            progress(count)
        return real(images, device, workers, progress=update)

    monkeypatch.setattr(data_module, "MemoryImages", decoding)
    before_handler = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM before training started") as info:
        Run(config(root / "data", run, overwrite=True, data_store="memory", limit=None,
                   batch_size=2), False, quiet, world_from_env())
    assert info.value.exit_code == 143 and len(batches) == 1
    assert digest(run) == before and signal.getsignal(signal.SIGTERM) == before_handler


def test_a_run_killed_after_moving_the_old_one_aside_gives_it_back(trained):
    """SIGKILL between moving the old run aside and the first checkpoint: the next command
    puts it back before anything else (and, without --overwrite, refuses to replace it)."""
    root, run, before = trained
    r = Run(config(root / "data", run, overwrite=True), False, quiet, world_from_env())
    r.folder._moved = []  # what a SIGKILL leaves: the backup, a stale lock, no release
    r.stop.uninstall()
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n')  # the killed run's own record
    assert (run / REPLACED).is_dir() and (run / LOCK_FILE).exists()
    messages = []
    with pytest.raises(FeatinvError, match="already holds a run"):
        train(config(root / "data", run), log=messages.append)
    assert any("put back" in m for m in messages), messages
    assert digest(run) == before


@pytest.mark.slow
def test_a_killed_process_is_seen_by_the_next_run(trained, tmp_path):
    """The same, with a real SIGKILL of a command-line run as soon as it has moved the old
    run aside (its data is slow to load, so the kill lands before the first checkpoint)."""
    root, run, before = trained
    copy = tmp_path / "run"
    copy.mkdir()
    for p in run.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    write_images(tmp_path / "many", 400, size=(64, 64))
    proc = subprocess.Popen([sys.executable, "-m", "featinv", *map(str, cli_args(
        root, copy, "--data", tmp_path / "many", "--limit", "400", "--epochs", "50"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                  "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (copy / REPLACED).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (copy / "decoder.safetensors").exists():  # renamed last: a complete new checkpoint
        pytest.skip("the run wrote its first checkpoint before it was killed")
    done = subprocess.run([sys.executable, "-m", "featinv", "train", "-f", "hog", "--data",
                           str(root / "data"), "--out", str(copy), "--image-size", "16",
                           "--epochs", "1", "--device", "cpu"], capture_output=True, text=True)
    assert done.returncode == 1 and "put back" in done.stderr, done.stderr
    assert digest(copy) == before


@pytest.mark.slow
def test_fine_tuning_a_run_in_place(trained, tmp_path):
    """--init-from RUN --out RUN --overwrite reads RUN's weights before anything moves; the old
    run is deleted only once the new one has its checkpoint."""
    root, run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    messages = []
    train(config(root / "data", copy, overwrite=True, init_from=str(copy), lr=1e-4),
          log=messages.append)
    text = "\n".join(messages)
    assert "starting from the weights of" in text
    assert "moved to" in text and "deleted the previous run" in text, text
    assert not (copy / REPLACED).exists()
    assert sorted(p.name for p in copy.iterdir()) == ["decoder.safetensors", "metrics.jsonl",
                                                      STATE_FILE]  # the old preview is gone
    from featinv.inversion.load import load_decoder

    before = load_decoder(run / "decoder.safetensors").state_dict()
    after = load_decoder(copy / "decoder.safetensors").state_dict()
    # started from the old weights: close to them after a few small steps, not a fresh init
    diffs = [float((after[k].float() - before[k].float()).abs().max()) for k in before
             if before[k].is_floating_point() and "running_" not in k]
    assert max(diffs) < 0.05


def test_without_overwrite_a_run_is_refused_and_untouched(trained, capsys):
    root, run, before = trained
    args = [a for a in cli_args(root, run) if a != "--overwrite"]
    code, _, err = run_cli(capsys, *args)
    assert code == 1 and "already holds a run" in err
    assert digest(run) == before


@pytest.mark.parametrize("where", ["data", "val"])
def test_out_inside_the_data_is_refused(tmp_path, where):
    """A run inside its own --data (or --val) would read its previews as images."""
    write_images(tmp_path / "data", 8)
    write_images(tmp_path / "val", 2, seed=1)
    out = tmp_path / where / "run"
    with pytest.raises(FeatinvError, match=f"inside --{where}"):
        train(config(tmp_path / "data", out, val=str(tmp_path / "val")), log=quiet)
    with pytest.raises(FeatinvError, match=f"inside --{where}"):
        train(config(tmp_path / "data", tmp_path / where, val=str(tmp_path / "val")),
              log=quiet)


def test_a_packed_decoder_and_a_run_never_share_a_folder(tmp_path, capsys):
    """``pack RUN -o RUN`` put model.safetensors beside the run's decoder, and ``-c RUN`` then
    silently loaded that copy (stale once the run is resumed), while ``pack RUN -o
    RUN/decoder.safetensors --overwrite`` could replace the trained decoder; ``train --out`` a
    packed folder did the same the other way round. Neither is made, and a folder holding both
    is refused by every reader rather than read as one of them."""
    from featinv.inversion.load import ZOO_DIR

    shipped = (ZOO_DIR / "hog.safetensors").read_bytes()
    run = tmp_path / "run"
    run.mkdir()
    (run / "decoder.safetensors").write_bytes(shipped)
    code, _, err = run_cli(capsys, "pack", run, "-o", run, "--overwrite")
    [line] = error_lines(err)
    assert code == 1 and "holds a training run" in line
    assert sorted(p.name for p in run.iterdir()) == ["decoder.safetensors"]
    packed = tmp_path / "packed"
    packed.mkdir()
    (packed / "model.safetensors").write_bytes(shipped)
    write_images(tmp_path / "data", 4)
    code, _, err = run_cli(capsys, "train", "-f", "hog", "--data", tmp_path / "data", "--out",
                           packed, "--image-size", "16", "--epochs", "1", "--device", "cpu")
    [line] = error_lines(err)
    assert code == 1 and "holds a packed decoder" in line
    assert sorted(p.name for p in packed.iterdir()) == ["model.safetensors"]
    (packed / "decoder.safetensors").write_bytes(shipped)  # made by hand, or by an old featinv
    for args in (["invert", "-c", packed, "skimage:coffee", "-o", tmp_path / "o"],
                 ["pack", packed, "-o", tmp_path / "p.safetensors"]):
        code, _, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and "holds both model.safetensors" in line, err


def test_a_packed_file_is_never_written_into_a_run_folder(tmp_path, capsys):
    """Round 4: ``pack RUN -o OTHER_RUN/model.safetensors`` (a file, not a folder) still put a
    packed decoder beside another run's, and ``-o OTHER_RUN/decoder.safetensors --overwrite``
    replaced that run's trained decoder with exit 0; ``-o RUN/x.safetensors`` did the same in
    the source's own folder. Each is refused and every run keeps its files."""
    from featinv.inversion.load import ZOO_DIR

    shipped = (ZOO_DIR / "hog.safetensors").read_bytes()
    runs = {}
    for name, files in (("run", ["decoder.safetensors"]), ("other", ["decoder.safetensors"]),
                        ("state_only", ["train_state.safetensors"])):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).write_bytes(shipped)
        runs[name] = sorted(p.name for p in (tmp_path / name).iterdir())
    run = tmp_path / "run"
    for out in ("other/model.safetensors", "other/decoder.safetensors", "run/x.safetensors",
                "state_only/model.safetensors"):
        code, _, err = run_cli(capsys, "pack", run, "-o", tmp_path / out, "--overwrite")
        [line] = error_lines(err)
        assert code == 1 and "is in a training run's folder" in line, (out, err)
    for name, files in runs.items():
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == files
    assert (tmp_path / "other" / "decoder.safetensors").read_bytes() == shipped
    code, _, _ = run_cli(capsys, "pack", run, "-o", tmp_path / "packed.safetensors")
    assert code == 0 and (tmp_path / "packed.safetensors").is_file()


@pytest.mark.slow
def test_resume_with_overwrite_continues_the_run_without_replacing_it(trained, tmp_path):
    """--resume --overwrite where a training state is: the run is continued, as with --resume
    alone; it said the previous run was moved aside and deleted while it resumed it."""
    root, run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    messages = []
    train(config(root / "data", copy, epochs=2, overwrite=True), resume=True,
          log=messages.append)
    text = "\n".join(messages)
    assert "resuming at step 2" in text and "moved to" not in text and "deleted" not in text
    assert not (copy / REPLACED).exists()
    records = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in records] == [1, 2]  # the first epoch's kept


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "1", "RANK": "3"}, {"WORLD_SIZE": "0"},
                                 {"RANK": "-1"}, {"WORLD_SIZE": "2", "RANK": "1"},
                                 {"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "29500"}])
def test_torchrun_variables_set_by_mistake_are_refused_before_the_run(tmp_path, monkeypatch,
                                                                      env):
    """RANK/WORLD_SIZE left over in a plain shell: RANK 3 of 1 trained and exited 0 without
    writing anything (only rank 0 writes), WORLD_SIZE=0 was a ZeroDivisionError, and WORLD_SIZE=2
    without torchrun's MASTER_ADDR was torch's rendezvous ValueError. One line, before any work."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                 "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_images(tmp_path / "data", 4, size=(24, 20))
    with pytest.raises(FeatinvError, match="torchrun") as err:
        train(config(tmp_path / "data", tmp_path / "run"), log=quiet)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()
