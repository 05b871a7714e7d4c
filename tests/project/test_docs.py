"""The docs keep up with the code: every hook, command and option is documented."""
from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import click
import pytest

from featinv.representation import hookspecs
from featinv.cli.main import cli
from helpers import REPO

DOCS = REPO / "docs"

HOOKS = sorted(name for name, obj in vars(hookspecs).items()
               if name.startswith("featinv_") and inspect.isfunction(obj))

def _all_commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Commands by name, subcommands of groups as ``group sub`` (``analyze perturb``)."""
    found = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(_all_commands(command, f"{prefix}{name} "))
    return found


ALL_COMMANDS = _all_commands(cli)
COMMANDS = sorted(ALL_COMMANDS)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _headings(text: str) -> list[str]:
    """Heading texts of a Markdown page, without '#', backticks and surrounding space."""
    return [line.lstrip("#").strip().strip("`").strip()
            for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def _options(command: click.Command) -> list[str]:
    """Every option string of a command (``--image-size``, ``-f``, ...), help excluded."""
    return [opt for param in command.params if isinstance(param, click.Option)
            for opt in (*param.opts, *param.secondary_opts)]


def test_there_are_hooks_and_commands_to_check():
    assert "featinv_register_features" in HOOKS and "featinv_build_decoder" in HOOKS
    assert {"train", "invert", "evaluate"} <= set(COMMANDS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_in_plugins_page(hook):
    assert re.search(rf"\b{hook}\b", _read("plugins.md")), (
        f"hook {hook} (featinv/representation/hookspecs.py) is not mentioned in docs/plugins.md")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_a_heading_in_cli_page(name):
    headings = _headings(_read("cli.md"))
    assert name in headings or f"featinv {name}" in headings, (
        f"docs/cli.md has no heading for the command '{name}' (headings: {headings})")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_documented_in_cli_page(name):
    text = _read("cli.md")
    missing = [opt for opt in _options(ALL_COMMANDS[name])
               if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)]
    assert not missing, f"options of 'featinv {name}' missing from docs/cli.md: {missing}"


def test_global_options_are_documented_in_cli_page():
    text = _read("cli.md")
    missing = [opt for opt in _options(cli)
               if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)]
    assert not missing, f"options of 'featinv' missing from docs/cli.md: {missing}"


def _test_module(path: str):
    """The test file ``tests/<path>`` as a module (another folder's, so not on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location(f"docs_{Path(path).stem}", REPO / "tests" / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_troubleshooting_page_lists_the_robustness_messages():
    """Every reason the robustness tests provoke is explained in docs/troubleshooting.md."""
    test_bad_inputs = _test_module("io/test_bad_inputs.py")
    test_checkpoint_tampering = _test_module("io/test_checkpoint_tampering.py")

    page = (DOCS / "troubleshooting.md").read_text()
    reasons = set(test_bad_inputs.INVALID.values())
    reasons |= {message for _, message in test_checkpoint_tampering.CASES.values()
                if message != "nosuch"}
    reasons |= {"No space left on device", "NaN or infinite", "holds no readable images",
                "never unpickles", "failed to build", "failed on a batch", "returned shape",
                "does not split over", "too small", "cannot decode image"}
    reasons |= {  # issue 16: outputs, limits, silent wrong results, actionable messages
        "exists already", "never replaces an input", "is a file, not a folder", "Cannot write",
        "over the limit of 16 megapixels", "weights do not fit", "is not in the range",
        "returned NaN or infinite features", "float image with values in", "does not accept",
        "has no example image", "no CUDA GPU", "not a device name", "are identical",
        "is a folder, not a checkpoint", "which no installed plugin provides",
        "nested too deeply", "divide by 255", "over half of this machine's",
        "must be a finite number above 0", "cannot be read"}
    reasons |= {  # issue 24, round 9
        "featinv never writes that", "lies far outside the image range [0, 1]",
        "more than Adam can make"}
    reasons |= {  # issue 24, round 11: E1, E7, E10
        "plugin code must raise an exception, not end the process", "failed to load: SystemExit",
        "give NaN or infinite SqueezeNet activations", "one and the same SqueezeNet activation",
        "where SqueezeNet has float weights", "px (width x height)", "crop it to a less elongated"}
    reasons |= {  # issue 24, round 11: E2, E3 (inversion.probes)
        "though the decoder draws features like its training data's within it",
        "do not fit its representation"}
    reasons |= {  # issue 24, round 12: D7 (optimizer states) and D10 (metadata sizes)
        "holds no state for any of the run's", "parameters that every step updates lack one",
        "the mean square of gradients of", "not an entry this version knows",
        "not text of at most 65536 characters", "at most 65536 are stored"}
    reasons |= {  # issue 24, round 12: D4 (inversion.probes), D5 (perceptual classifier)
        "(trained decoders give 0.1 to 100)", "lies below every value of the features",
        "the values of a decoder built without statistics, but its metadata says it was trained",
        "the same SqueezeNet class", "a zeroed or damaged classifier"}
    reasons |= {  # issue 24, round 13: N3 (a plugin's exception text), N4 (built-in names)
        "(its message cannot be shown: its __str__ failed)", "cut to 500 characters",
        "the name of a built-in representation (plugin 'P'); its 'NAME' is ignored: rename it",
        "the name of a decoder featinv ships ('featinv zoo'); its 'hog.realistic' is ignored: "
        "rename it"}
    reasons |= {  # issue 24, round 14: A6, N3, A7 (what plugins choose), N8 (pack's metadata)
        "(its message cannot be shown: its __str__ did not return)",
        "is not a plugin's name (printable text of at most 100 characters)",
        "failed to load or to register its representations; 'featinv plugins' says why.",
        "a name under the built-in representation 'hog' (plugin 'featinv.features.hog'), which "
        "'invert -f' reads as a decoder of 'hog'; its 'hog.x' is ignored: rename it",
        "is a path or URL, which a packed decoder does not carry: the packed file stores the "
        "default", "is not the plugin that provides",
        "a decoder whose features depend on a file of this machine cannot be packed"}
    reasons |= {  # issue 24, round 14: A3 (featinv's outputs), A7, N10 (train's memory budget)
        "featinv outputs (NAME, ...): pictures featinv wrote, not photos",
        "holds only pictures featinv wrote (reconstructions), no photos.",
        "holds several frames or pages; featinv uses the first alone",
        "lets it read whole; save the first picture", "is given 2 times, and only the last "
        "would count; give it once; put several loss terms in one --loss",
        "a file of the kernel (proc), not a checkpoint file; featinv reads only regular files.",
        "invert it at a larger size, e.g. --size N", "for a batch of B images and N validation "
        "images, more than the $FEATINV_MEMORY_BUDGET", "leaves beside a step's batch and the "
        "validation images", "loss must be a string such as 'pixel,feature=0.05' or a dict"}
    reasons |= {said for _, said in _test_module("io/test_refusals_file_kinds.py").KINDS.values()}
    missing = sorted(r for r in reasons if r not in page)
    assert not missing, f"docs/troubleshooting.md does not explain: {missing}"


def _section(text: str, heading: str) -> str:
    """The text of a Markdown section, from its heading to the next heading of any level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"#{1,6} ", lines[i])),
               len(lines))
    return "\n".join(lines[start:end])


def _table_rows(section: str) -> dict[str, list[str]]:
    """The option table of a section: its cells by row, keyed by each option the first cell
    names (``--feature`` and ``-f`` both give the ``-f``, ``--feature TEXT`` row)."""
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `-"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        for opt in re.findall(r"`(-[\w-]+)", cells[0]):
            rows[opt] = cells
    return rows


def test_train_table_lists_every_option_of_train_help_with_its_default():
    """`featinv train`'s options are generated from TrainConfig: the table in docs/cli.md must
    name each one (in its first column) and show the default `--help` shows."""
    rows = _table_rows(_section(_read("cli.md"), "## train"))
    command = ALL_COMMANDS["train"]
    missing = [opt for opt in _options(command) if opt not in rows]
    assert not missing, f"options of 'featinv train' missing from the table in docs/cli.md: {missing}"
    wrong = []
    for param in command.params:
        if not (isinstance(param, click.Option) and param.show_default
                and param.default is not None and not param.is_flag):
            continue
        shown = rows[param.opts[0]][1].strip("`")
        try:
            same = float(shown) == float(param.default)
        except ValueError:
            same = shown == str(param.default)
        if not same:
            wrong.append(f"{param.opts[0]}: table says {shown!r}, --help {param.default!r}")
    assert not wrong, f"defaults in docs/cli.md's train table differ from --help: {wrong}"


def test_api_page_lists_every_train_config_field():
    import dataclasses

    from featinv.training.config import TrainConfig

    text = _section(_read("api.md"), "## Training")
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"`{f.name}`" not in text]
    assert not missing, f"TrainConfig fields missing from docs/api.md's Training table: {missing}"
