"""A message advises only what the command at hand takes, and a shipped decoder is found under
every spelling the command line accepts (issue 24, D4 and D5).

D4: ``train --init-from`` was told to "pass it with -c", which ``train`` does not take; ``pack``
was told about ``-c`` and ``-f``; ``invert`` about ``-p weights=``. Messages shared by several
commands now name only options of the command running (``featinv.errors.command_options``).

D5: ``--init-from hog.default`` and ``-c zoo:hog.default`` said "Unknown feature", and an
unknown variant of a known representation (``hog.nosuch``) was called an unknown feature; it is
now reported as an unknown variant, with the variants that are shipped."""
from __future__ import annotations

import re

import pytest

from featinv.errors import CheckpointError, FeatinvError, UnknownFeatureError
from featinv.inversion import sources
from featinv.inversion.load import ZOO_DIR

from helpers import error_lines, run_cli, write_images

# an option in a message: '-c', '--init-from', not 'hf-hub:' or 'x-y'
OPTION = re.compile(r"(?<![\w:./-])(--?[a-z][a-z0-9-]*)")


def command_options(command: str) -> set[str]:
    from featinv.cli.main import cli

    return {o for p in cli.commands[command].params for o in (*p.opts, *p.secondary_opts)
            if o.startswith("-")}


def assert_advises_only_its_options(command: str, line: str) -> None:
    """Every option ``line`` names is one of ``command``'s (quoted commands such as 'featinv
    train --feature X' name another command's options and are left out)."""
    advised = set(OPTION.findall(re.sub(r"'featinv [^']*'", "", line)))
    unknown = advised - command_options(command) - {"-h", "--help"}
    assert not unknown, f"{command}: {line!r} advises {sorted(unknown)}"


@pytest.fixture
def images(tmp_path):
    write_images(tmp_path / "imgs", 4, size=(40, 40))
    return tmp_path / "imgs"


def train_args(images, out, *extra):
    return ["train", "-f", "hog", "--data", images, "-o", out, "--image-size", 32, "--budget",
            4, "--device", "cpu", "--workers", 0, *extra]


@pytest.mark.parametrize("value", ["myrun", "alexnet.conv1.nosuch", "alexnet.conv1"])
def test_messages_advise_only_options_train_takes(tmp_path, images, capsys, monkeypatch, value):
    (tmp_path / "myrun").mkdir()  # a bare name that is also a folder here
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *train_args(images, tmp_path / "out", "--init-from", value))
    [line] = error_lines(err)
    assert code == 1 and "-c" not in line.split()
    assert_advises_only_its_options("train", line)


@pytest.mark.parametrize("source", ["hog", "hog.realistic", "zoo:alexnet.conv1", "zoo:hog.x"])
def test_messages_advise_only_options_pack_takes(tmp_path, capsys, monkeypatch, source):
    monkeypatch.chdir(tmp_path)  # no file or folder named like the source
    code, _, err = run_cli(capsys, "pack", source, "-o", tmp_path / "p.safetensors")
    [line] = error_lines(err)
    assert code == 1
    assert_advises_only_its_options("pack", line)
    assert not (tmp_path / "p.safetensors").exists()


@pytest.fixture
def offline(monkeypatch):
    import torchvision.models._api as api

    def fail(*args, **kwargs):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(api, "load_state_dict_from_url", fail)


@pytest.mark.parametrize("command, args, spelling", [
    ("invert", ["--method", "optimize", "-f", "alexnet.conv1", "IMG", "-o", "OUT"],
     "--weights PATH"),
    ("extract", ["-f", "alexnet.conv1", "IMG", "-o", "OUT/f.npz"], "-p weights=PATH"),
    ("evaluate", ["--method", "optimize", "-f", "alexnet.conv1", "--data", "DIR"],
     "weights=PATH"),
])
def test_the_weights_advice_names_the_option_of_each_command(tmp_path, images, capsys, offline,
                                                              command, args, spelling):
    args = [str(images / "img000.png") if a == "IMG" else str(images) if a == "DIR"
            else a.replace("OUT", str(tmp_path / "out")) for a in args]
    code, _, err = run_cli(capsys, command, *args)
    [line] = error_lines(err)
    assert code == 1 and "not cached" in line and spelling in line, line
    assert_advises_only_its_options(command, line)


def test_the_python_api_keeps_the_documented_spelling(offline):
    import featinv

    with pytest.raises(FeatinvError, match="-p weights=PATH"):
        featinv.get_feature("alexnet.conv1")


# -- D5: shipped decoders under every spelling --------------------------------------------------

@pytest.mark.parametrize("ref, file", [
    ("hog.default", "hog"), ("HOG.Default", "hog"), ("zoo:hog.default", "hog"),
    ("zoo:hog.realistic", "hog.realistic"), ("squeezenet.fire5.default", "squeezenet.fire5"),
    ("zoo:squeezenet.fire5", "squeezenet.fire5"),
])
def test_a_shipped_decoder_is_found_under_each_spelling(ref, file):
    assert sources.decoder_file(ref) == ZOO_DIR / f"{file}.safetensors"


@pytest.mark.parametrize("ref", ["hog.nosuch", "zoo:hog.nosuch", "HOG.NoSuch"])
def test_an_unknown_variant_is_reported_as_one_with_the_known_ones(ref):
    with pytest.raises(CheckpointError, match="No decoder 'nosuch' is shipped for 'hog'; its "
                                              "decoders are: default, realistic") as info:
        sources.decoder_file(ref)
    assert not isinstance(info.value, UnknownFeatureError)


@pytest.mark.parametrize("ref", ["nosuch", "nosuch.default", "zoo:nosuch.x"])
def test_an_unknown_representation_is_still_one(ref):
    with pytest.raises(UnknownFeatureError):
        sources.decoder_file(ref)


@pytest.mark.parametrize("args", [
    ["invert", "-f", "hog.nosuch", "IMG", "-o", "OUT"],
    ["invert", "-c", "zoo:hog.nosuch", "IMG", "-o", "OUT"],
    ["evaluate", "-f", "hog.nosuch", "--data", "DIR"],
    ["audit", "-f", "hog.nosuch", "--data", "DIR", "-o", "OUT"],
    ["audit", "-f", "hog", "--decoder", "nosuch", "--data", "DIR", "-o", "OUT"],
    ["train", "-f", "hog", "--data", "DIR", "-o", "OUT", "--init-from", "hog.nosuch",
     "--workers", "0", "--device", "cpu"],
])
def test_every_command_reports_an_unknown_variant(tmp_path, images, capsys, args):
    args = [str(images / "img000.png") if a == "IMG" else str(images) if a == "DIR"
            else str(tmp_path / "out") if a == "OUT" else a for a in args]
    code, _, err = run_cli(capsys, *args)
    [line] = error_lines(err)
    assert code == 1 and "its decoders are: default, realistic" in line, line
    assert not (tmp_path / "out").exists() or args[0] == "train"


@pytest.mark.parametrize("args, written", [
    (["invert", "-f", "hog.default", "IMG", "-o", "OUT"], "img000.hog.png"),
    (["invert", "-c", "zoo:hog.default", "IMG", "-o", "OUT"], "img000.hog.png"),
])
def test_the_default_variant_spelled_out_inverts(tmp_path, images, capsys, args, written):
    args = [str(images / "img000.png") if a == "IMG" else str(tmp_path / "out") if a == "OUT"
            else a for a in args]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert (tmp_path / "out" / written).is_file()


def test_init_from_takes_the_default_variant_spelled_out(tmp_path, images, capsys):
    """It resolves to the shipped HOG decoder: the refusal is that its network differs from the
    run's (32 px here), not an unknown feature."""
    for value in ("hog.default", "zoo:hog.default"):
        code, _, err = run_cli(capsys, *train_args(images, tmp_path / "out", "--init-from",
                                                   value))
        [line] = error_lines(err)
        assert code == 1 and "differs from the one this run builds" in line, line


def test_a_variant_with_decoder_too_is_refused(tmp_path, images, capsys):
    code, _, err = run_cli(capsys, "invert", "-f", "hog.default", "--decoder", "realistic",
                           images / "img000.png", "-o", tmp_path / "out")
    [line] = error_lines(err)
    assert code == 1 and "names a decoder variant already" in line
