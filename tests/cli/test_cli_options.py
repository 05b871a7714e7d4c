"""The command line's options come from the code's own tables: every option that takes a name
from a fixed set is a ``click.Choice`` of that set (unknown values fail while parsing, exit 2),
and ``featinv train``'s options are generated from ``TrainConfig``."""
import dataclasses

import click
import pytest

from featinv import choices
from featinv.cli.main import cli
from featinv.training.config import TrainConfig
from helpers import run_cli as run


def _command(path: str) -> click.Command:
    command = cli
    for name in path.split():
        command = command.commands[name]
    return command


def _option(path: str, flag: str) -> click.Option:
    [option] = [p for p in _command(path).params if flag in p.opts]
    return option


TABLES = [
    ("train", "--preset", tuple(choices.PRESETS)),
    ("train", "--schedule", choices.SCHEDULES),
    ("train", "--data-store", choices.DATA_STORES),
    ("train", "--precision", ("auto", *choices.PRECISIONS)),
    ("train", "--cache-dtype", choices.CACHE_DTYPES),
    ("train", "--pixel-distance", choices.PIXEL_DISTANCES),
    ("invert", "--method", choices.METHODS),
    ("invert", "--precision", choices.PRECISIONS),
    ("evaluate", "--method", choices.METHODS),
    ("evaluate", "--precision", choices.PRECISIONS),
    ("analyze perturb", "--perturbation", choices.PERTURBATIONS),
    ("analyze sample", "--method", choices.SAMPLERS),
]


@pytest.mark.parametrize("path, flag, table", TABLES)
def test_options_offer_exactly_the_codes_table(path, flag, table):
    option = _option(path, flag)
    assert isinstance(option.type, click.Choice), (path, flag)
    assert list(option.type.choices) == list(table)


def test_every_choice_option_is_checked_against_a_table():
    """A new click.Choice option must be added to TABLES (so that it follows its table)."""
    def walk(command, prefix=""):
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, f"{prefix} {name}".strip())
        for param in command.params:
            if isinstance(param.type, click.Choice):
                yield prefix, param.opts[0]

    covered = {(path, flag) for path, flag, _ in TABLES}
    assert set(walk(cli)) == covered


def test_the_tables_match_the_code_that_acts_on_them():
    from featinv.analysis.analyses import FeatureSampler
    from featinv.analysis.perturb import NAMES
    from featinv.inversion.methods import METHODS

    assert NAMES == choices.PERTURBATIONS
    assert METHODS == choices.METHODS
    assert all(callable(getattr(FeatureSampler, name)) for name in choices.SAMPLERS)


@pytest.mark.parametrize("args", [
    ["invert", "--method", "gradient", "-f", "hog", "x.png"],
    ["invert", "--precision", "int8", "-f", "hog", "x.png"],
    ["train", "-f", "hog", "--data", "d", "-o", "o", "--preset", "huge"],
    ["train", "-f", "hog", "--data", "d", "-o", "o", "--schedule", "exponential"],
    ["analyze", "perturb", "hog", "--data", "d", "-p", "shuffle"],
    ["analyze", "sample", "hog", "--data", "d", "--method", "uniform"],
])
def test_unknown_values_fail_while_parsing(capsys, args):
    code, _, err = run(capsys, *args)
    assert code == 2 and "Invalid value" in err


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def test_train_options_are_generated_from_train_config():
    params = {p.name: p for p in _command("train").params}
    for f in dataclasses.fields(TrainConfig):
        if f.metadata.get("hidden"):  # params: from -p NAME=VALUE and --weights instead
            assert f.name not in params or f.name == "params", f.name
            continue
        option = params[f.name]
        flag = "--" + f.metadata.get("name", f.name.replace("_", "-"))
        assert flag in option.opts, f.name
        assert option.help == f.metadata["help"], f.name
        default = _default(f)
        if isinstance(default, tuple):  # a range given by its lower end
            default = default[0]
        unset = getattr(click._utils, "UNSET", None)  # click >= 8.3: no default given
        assert (None if option.default is unset else option.default) == default, f.name
        required = (f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING)
        assert option.required == required, f.name
        if "choices" in f.metadata:
            assert list(option.type.choices) == list(f.metadata["choices"]), f.name
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(params) - fields == {"weights", "resume"}
