"""No command loses a file: outputs get distinct names, inputs are never replaced, and an
existing output is only replaced with --overwrite (issue 16, item 2)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import featinv
from featinv.inversion.load import ZOO_DIR
from featinv.inversion.shipped import pack
from featinv.io.outputs import check_targets, plan_inputs, unique_labels

from helpers import error_lines as _errors, run_cli as run, write_images


@pytest.fixture
def clash(tmp_path):
    """``a/photo.jpg``, ``b/photo.jpg`` and ``photo.png``: three different pictures, one stem."""
    root = tmp_path / "photos"
    for i, rel in enumerate(["a/photo.jpg", "b/photo.jpg", "photo.png", "photo.jpg"]):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        colour = np.zeros((40, 48, 3), np.uint8)
        colour[..., i % 3] = 60 + 60 * i
        Image.fromarray(colour).save(root / rel, quality=95)
    return root


def test_same_named_photos_get_distinct_outputs_mirroring_subfolders(clash, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "invert", "-f", "hog", clash, "-o", out, "--size", 32,
                            "--side-by-side")
    assert code == 0, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a/photo.hog.png", "b/photo.hog.png", "photo.jpg.hog.png",
                       "photo.png.hog.png"]
    assert len(stdout.splitlines()) == 4
    # each picture shows its own input on the left: four different colours
    colours = {tuple(np.asarray(Image.open(out / p))[4:30, 4:30].reshape(-1, 3).mean(0).round())
               for p in written}
    assert len(colours) == 4


def test_plan_inputs_numbers_what_still_clashes_and_keeps_each_file_once(clash, tmp_path):
    other = tmp_path / "other"
    (other / "a").mkdir(parents=True)
    (other / "a" / "photo.jpg").write_bytes((clash / "a" / "photo.jpg").read_bytes())
    planned = plan_inputs([clash, other, clash / "photo.png", "skimage:coffee"])
    stems = [item.stem for item in planned]
    assert len(stems) == len(set(s.casefold() for s in stems)) == 6  # photo.png only once
    assert "a/photo.jpg" in stems and "a/photo.jpg-2" in stems and "coffee" in stems
    assert unique_labels(["hog", "hog", "lbp", "hog"]) == ["hog", "hog-2", "lbp", "hog-3"]


@pytest.mark.slow
def test_two_checkpoints_of_one_representation_do_not_share_an_output(tmp_path, capsys):
    ckpt = ZOO_DIR / "hog.safetensors"
    code, out, err = run(capsys, "invert", "-c", ckpt, "-c", ckpt, "skimage:coffee",
                         "--size", 32, "-o", tmp_path)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["coffee.hog-2.png", "coffee.hog.png"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_out_equal_to_the_input_never_replaces_it(tmp_path, capsys, overwrite):
    photo = write_images(tmp_path, 1)[0]
    before = photo.read_bytes()
    for args in (["invert", "-f", "hog", photo, "-o", photo],
                 ["extract", "-f", "hog", photo, "-o", photo],
                 ["show-features", "-f", "hog", photo, "-o", photo],
                 ["analyze", "interpolate", "hog", photo, photo, "-o", photo]):
        code, out, err = run(capsys, *args, *overwrite)
        assert code == 1 and "never replaces an input" in err, (args, err)
        assert len(_errors(err)) == 1 and out == ""
    assert photo.read_bytes() == before


def test_a_link_to_the_input_is_an_input_too(tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    (tmp_path / "link.png").symlink_to(photo)
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "-o", tmp_path / "link.png",
                       "--overwrite")
    assert code == 1 and "never replaces an input" in err


def test_outputs_inside_the_input_folder_never_replace_images_there(tmp_path, capsys):
    """Since round 13 (N9) no reconstruction is written into an input folder at all (the next
    command on it read them as photos), with --overwrite or not."""
    folder = tmp_path / "photos"
    write_images(folder, 2)
    before = {p: p.read_bytes() for p in folder.glob("*.png")}
    for overwrite in ([], ["--overwrite"]):
        code, _, err = run(capsys, "invert", "-f", "hog", folder, "-o", folder, "--size", 32,
                           *overwrite)
        assert code == 1 and "is inside the input folder" in err, err
    assert {p: p.read_bytes() for p in folder.glob("*.png")} == before


@pytest.mark.slow
def test_existing_outputs_need_overwrite(tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    cases = {
        "invert": (["invert", "-f", "hog", photo, "--size", 32, "-o", tmp_path / "inv"],
                   tmp_path / "inv" / f"{photo.stem}.hog.png"),
        "extract": (["extract", "-f", "hog", photo, "-o", tmp_path / "f.npz"], tmp_path / "f.npz"),
        "show-features": (["show-features", "-f", "hog", photo, "-o", tmp_path / "s.png"],
                          tmp_path / "s.png"),
        "unit": (["analyze", "unit", "hog", "-u", 0, "-o", tmp_path / "u.png"], tmp_path / "u.png"),
        "pack": (["pack", ZOO_DIR / "hog.safetensors", "-o",
                  tmp_path / "p.safetensors"], tmp_path / "p.safetensors"),
    }
    for name, (args, target) in cases.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"precious")
        code, out, err = run(capsys, *args)
        assert code == 1 and "exists already" in err and "--overwrite" in err, (name, err)
        assert target.read_bytes() == b"precious", name
        code, out, err = run(capsys, *args, "--overwrite")
        assert code == 0, (name, err)
        assert target.read_bytes() != b"precious", name


def test_pack_never_writes_onto_its_source(tmp_path, capsys):
    source = tmp_path / "decoder.safetensors"
    source.write_bytes((ZOO_DIR / "hog.safetensors").read_bytes())
    before = source.read_bytes()
    for given in (source, tmp_path):  # the file, or its folder (which means the same file)
        code, _, err = run(capsys, "pack", given, "-o", source, "--overwrite")
        assert code == 1 and "never replaces an input" in err
    with pytest.raises(featinv.FeatinvError, match="never replaces an input"):
        pack(source, source)
    assert source.read_bytes() == before


def test_a_folder_or_a_file_in_the_way_of_an_output_is_one_clear_line(tmp_path, capsys):
    photo = write_images(tmp_path / "in", 1)[0]
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "dir.safetensors").mkdir()
    (tmp_path / "file").write_text("not a folder")
    for args, message in [
            (["extract", "-f", "hog", photo, "-o", tmp_path / "dir.npz"], "is a folder"),
            (["pack", "zoo:hog", "-o", tmp_path / "dir.safetensors", "--overwrite"],
             "is a folder"),  # -o DIR (another name) writes a shared folder: docs/sharing.md
            (["invert", "-f", "hog", photo, "-o", tmp_path / "file"], "is a file, not a folder"),
            (["analyze", "perturb", "hog", "--data", tmp_path / "in", "-o", tmp_path / "file"],
             "is a file, not a folder")]:
        code, _, err = run(capsys, *args)
        assert code == 1 and message in err and len(_errors(err)) == 1, (args, err)
        assert "Traceback" not in err and "IsADirectoryError" not in err


def test_a_failed_write_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    photo = write_images(tmp_path / "in", 1)[0]

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("featinv.io.files.atomic_write", refuse)
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "--size", 32, "-o", tmp_path / "o")
    assert code == 1 and _errors(err) == [
        f"Error: Cannot write {tmp_path / 'o' / (photo.stem + '.hog.png')} (Permission denied); "
        "check that its folder is writable and has free space."]


def test_check_targets_allows_new_outputs(tmp_path):
    check_targets([tmp_path / "new" / "x.png"], [tmp_path / "x.png"])  # nothing raised


@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGHUP", 129)])  # SIGHUP: round 7
def test_sigterm_while_writing_leaves_no_partial_file_and_keeps_finished_ones(
        tmp_path, capsys, monkeypatch, name, code):
    """Round 6: SIGTERM ended a command at once (train alone handled it), leaving the output
    being written as a hidden '.NAME.XXXX.tmp' file. It now ends like Ctrl-C: the temporary file
    is removed, the outputs finished before it are kept, no later image is started (per-image
    error handlers do not swallow it), exit 143."""
    import os
    import signal

    photos = write_images(tmp_path / "in", 3)
    real_fsync, calls = os.fsync, []

    def fsync_then_sigterm(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second output, written but not yet in place
            os.kill(os.getpid(), getattr(signal, name))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_then_sigterm)
    before = signal.getsignal(getattr(signal, name))
    exit_code, _, err = run(capsys, "invert", "-f", "hog", tmp_path / "in", "--size", 32, "-o",
                            tmp_path / "o")
    assert exit_code == code and f"Terminated ({name})" in err and "Traceback" not in err, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{photos[0].stem}.hog.png"]
    assert len(calls) == 2 and signal.getsignal(getattr(signal, name)) == before  # restored


def test_an_output_another_command_wrote_meanwhile_is_kept(tmp_path, capsys, monkeypatch):
    """Round 7: two commands given the same -o both found it free, and the one finishing last
    replaced the other's result (both exit 0). A file that appears while featinv works is now
    kept, and this result is written beside it under a numbered name, with one line, exit 1."""
    import os

    photo = write_images(tmp_path / "in", 1)[0]
    target, real_fsync = tmp_path / "out.png", os.fsync

    def other_command_writes_first(fd):
        if not target.exists():
            target.write_bytes(b"the other command's result")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", other_command_writes_first)
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "--size", 32, "-o", target)
    assert code == 1 and "created by another program" in err and "out-2.png" in err, err
    assert target.read_bytes() == b"the other command's result"
    assert Image.open(tmp_path / "out-2.png").format == "PNG"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # with --overwrite the user asked for the replacement
    code, _, err = run(capsys, "invert", "-f", "hog", photo, "--size", 32, "-o", target,
                       "--overwrite")
    assert code == 0 and Image.open(target).format == "PNG", err


@pytest.mark.slow
def test_a_closed_stdout_pipe_does_not_stop_the_work(tmp_path):
    """Round 7: 'featinv invert FOLDER -o OUT | head -1' stopped after the second picture, with
    exit 1 and no word (click's answer to EPIPE); the rest of the batch was never written."""
    import subprocess
    import sys

    write_images(tmp_path / "in", 6)
    proc = subprocess.Popen([sys.executable, "-m", "featinv", "invert", "-f", "hog",
                             str(tmp_path / "in"), "--size", "32", "-o", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as head -1 does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert len(list((tmp_path / "o").glob("*.hog.png"))) == 6 and "Error" not in err


def test_files_written_together_are_all_moved_in_before_a_signal_is_handled(tmp_path,
                                                                           monkeypatch):
    """io.files.written_together: nothing of the set replaces the old files when the block is
    stopped; once it ends, SIGTERM waits until every file is in (it was handled between two
    renames: a new JSON beside the old picture)."""
    import os
    import signal

    import featinv.io.files as files

    class Stop(BaseException):
        pass

    def stop(*_):
        raise Stop

    for name in ("a.json", "b.png"):
        (tmp_path / name).write_text("old")
    with pytest.raises(Stop), files.written_together(tmp_path) as stage:
        (stage / "a.json").write_text("new")
        raise Stop
    assert sorted((p.name, p.read_text()) for p in tmp_path.iterdir()) == [
        ("a.json", "old"), ("b.png", "old")]  # and no hidden folder left

    real_move = files.move_into_place

    def move_then_sigterm(tmp, path):
        real_move(tmp, path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(files, "move_into_place", move_then_sigterm)
    before = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stop), files.written_together(tmp_path) as stage:
            for name in ("a.json", "b.png"):
                (stage / name).write_text("new")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert sorted((p.name, p.read_text()) for p in tmp_path.iterdir()) == [
        ("a.json", "new"), ("b.png", "new")]


def _sigterm(*_args, **_kwargs):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_between_the_two_files_of_perturb_keeps_the_old_pair(tmp_path, capsys,
                                                                     monkeypatch):
    """'analyze perturb --overwrite' wrote perturb.json, then drew perturb.png: SIGTERM while
    drawing left the new JSON beside the old chart. The two are now moved in together."""
    import json

    import featinv.analysis.figures as figures
    import featinv.analysis.plots as plots

    photos, out = write_images(tmp_path / "in", 2)[0].parent, tmp_path / "p"
    result = {"layers": [{"layer": "hog", "errors": {"none": 0.5}}], "autoencoder": []}
    monkeypatch.setattr(figures, "perturbation_study", lambda *a, **k: result)
    args = ("analyze", "perturb", "hog", "--data", photos, "-o", out, "--overwrite")
    code, _, err = run(capsys, *args)
    assert code == 0 and json.loads((out / "perturb.json").read_text()) == result, err
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = {"layers": [{"layer": "hog", "errors": {"none": 0.9}}], "autoencoder": []}
    monkeypatch.setattr(plots, "perturbation_chart", _sigterm)
    code, _, err = run(capsys, *args)
    assert code == 143 and "Terminated" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_between_the_two_files_of_audit_keeps_the_old_pair(tmp_path, capsys,
                                                                   monkeypatch):
    """'audit --overwrite' wrote audit.json, then audit.html: SIGTERM between the two left the
    new JSON beside the old report. The two are now moved in together."""
    import json
    from types import SimpleNamespace

    import featinv.analysis.audit as audit
    import featinv.analysis.plots as plots
    import featinv.analysis.report_html as report_html

    photos, out = write_images(tmp_path / "in", 2)[0].parent, tmp_path / "a"
    out.mkdir()
    for name in ("audit.json", "audit.html"):
        (out / name).write_text("old")
    monkeypatch.setattr(audit, "audit", lambda *a, **k: SimpleNamespace(
        result={"new": True}, pictures={}))
    monkeypatch.setattr(plots, "reidentification_chart", lambda result: b"")
    monkeypatch.setattr(report_html, "write_report", _sigterm)
    args = ("audit", "-f", "hog", "--data", photos, "-o", out, "--overwrite", "--json",
            "--reid-feature", "none", "--perceptual-weights", "none")
    code, _, err = run(capsys, *args)
    assert code == 143 and "Terminated" in err, err
    assert sorted((p.name, p.read_text()) for p in out.iterdir()) == [
        ("audit.html", "old"), ("audit.json", "old")]
    monkeypatch.setattr(report_html, "write_report",
                        lambda path, *a: path.write_text("new report"))
    code, stdout, err = run(capsys, *args)
    assert code == 0 and json.loads(stdout) == {"new": True}, err
    assert json.loads((out / "audit.json").read_text()) == {"new": True}
    assert (out / "audit.html").read_text() == "new report" and len(list(out.iterdir())) == 2
