"""Fast listing: the JSON listing cache, imports without PyTorch, describe -p, names in any case."""
import json
import os
import subprocess
import sys

import pytest

import featinv
from featinv.errors import FeatinvError, UnknownFeatureError
from featinv.inversion.shipped import shipped
from featinv.cli import listing

NO_TORCH = ("import sys; {code}; "
            "bad = [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules]; "
            "print('imported:', bad)")


def _python(code: str, cache: str) -> str:
    env = {**os.environ, "FEATINV_CACHE_DIR": cache}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_and_package_import_without_torch(tmp_path):
    out = _python(NO_TORCH.format(code="import featinv, featinv.cli.main; featinv.CellGrid"),
                  str(tmp_path))
    assert out.strip().endswith("imported: []")


def test_help_does_not_import_torch(tmp_path):
    code = ("from featinv.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass")
    out = _python(NO_TORCH.format(code=f"exec({code!r})"), str(tmp_path))
    assert "list-features" in out and out.strip().endswith("imported: []")


def test_cached_listing_loads_no_plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATINV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(listing, "_in_process_plugins", lambda: False)
    warm = ("from featinv.cli import listing; r, _ = listing.rows('h*', 96); "
            "d = listing.describe('alexnet.conv5', 96); z = listing.zoo(lambda: []); "
            "print([x['name'] for x in r], d['layout'], d['min_size'], len(z))")
    for _ in range(3):  # a file of featinv edited meanwhile (by someone else) is a new key
        listing.rows("*", 96), listing.zoo(shipped)  # computes and writes the cache
        out = _python(NO_TORCH.format(code=warm), str(tmp_path))
        if out.strip().endswith("imported: []"):
            break
    assert "['hog']" in out and "'channels': 256, 'height': 2, 'width': 2" in out
    assert out.strip().endswith("imported: []")


def test_stale_or_corrupt_cache_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATINV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(listing, "_in_process_plugins", lambda: False)
    path = listing.cache_path()
    for junk in ("{not json", json.dumps([1, 2]),
                 json.dumps({"format": listing.FORMAT, "key": "an old key", "features": {},
                             "layouts": {"64": {}}, "problems": []})):
        path.write_text(junk)
        rows, _ = listing.rows("hog", 64)
        assert [r["layout"]["height"] for r in rows] == [8]
        data = json.loads(path.read_text())
        assert data["key"] != "an old key" and "hog" in data["features"]
    # a file with the right key but a tampered entry is not trusted either
    data["features"]["hog"]["differentiable"] = "yes"
    path.write_text(json.dumps(data))
    assert listing.rows("hog", 64)[0][0]["differentiable"] is True
    # a changed FEATINV_ variable is a new key
    key = listing.fingerprint()
    monkeypatch.setenv("FEATINV_SOMETHING", "1")
    assert listing.fingerprint() != key


def test_parameter_ranges_print_whole_numbers_in_full(capsys):
    """sift's seed range was written '4.29497e+09' (``:g``) in the message for a refused value;
    whole-number bounds are now written in full, also where describe and check_number show them."""
    from featinv.limits import check_number, format_bound
    from helpers import run_cli as run

    assert format_bound(2**32 - 1) == "4294967295" and format_bound(0.01) == "0.01"
    assert format_bound(1e12) == "1e+12"
    code, out, _ = run(capsys, "describe", "sift")
    assert code == 0 and "(from 0 to 4294967295)" in out and "e+09" not in out
    code, _, err = run(capsys, "describe", "sift", "-p", "seed=-1")
    assert code == 1 and "(it must be from 0 to 4294967295)" in err, err
    with pytest.raises(FeatinvError, match="from 1 to 4294967296"):
        check_number("--n", 0, 1, 2**32)


def test_describe_with_params_and_any_case(capsys):
    from helpers import run_cli as run

    code, out, _ = run(capsys, "describe", "HOG", "-p", "cell_size=4", "--image-size", "100")
    assert code == 0 and out.startswith("hog:")
    assert "at 100 px:      31x25x25" in out and "cell_size = 4 (default 8)" in out
    code, out, _ = run(capsys, "describe", "hog", "-p", "cell_size=4", "--json")
    info = json.loads(out)
    assert info["values"]["cell_size"] == 4 and info["layout"]["height"] == 32
    code, _, err = run(capsys, "describe", "hog", "-p", "no_such=1")
    assert code == 1 and "has no parameter 'no_such'" in err
    code, out, _ = run(capsys, "list-features", "HO*", "--json")
    assert [r["name"] for r in json.loads(out)] == ["hog"]


def test_names_in_any_case(capsys, tmp_path):
    from helpers import run_cli as run

    code, out, _ = run(capsys, "invert", "-f", "HOG", "skimage:astronaut", "-o", str(tmp_path))
    assert code == 0 and out.strip().endswith("astronaut.hog.png")  # the shipped decoder
    assert featinv.get_spec("HOG").name == "hog"
    assert featinv.get_feature("Alexnet.Conv5", weights="random").name == "alexnet.conv5"
    with pytest.raises(UnknownFeatureError, match="Did you mean 'hog'"):
        featinv.get_spec("HGO")


def test_bad_timm_stage_is_a_plain_error(capsys):
    from helpers import run_cli as run

    with pytest.raises(UnknownFeatureError) as info:
        featinv.get_spec("timm.resnet18.stage9")
    assert str(info.value) == ("Unknown feature 'timm.resnet18.stage9': timm model 'resnet18' "
                               "has feature stages 0 to 4, not 9.")
    code, _, err = run(capsys, "describe", "timm.resnet18.stage9")
    assert code == 1 and err.count("\n") == 1 and "Plugin" not in err


def test_plugin_errors_that_are_featinv_errors_pass_unchanged(fresh_plugins):
    from featinv.representation.plugins import register_plugin, unregister_plugin

    class Family:
        @featinv.hookimpl
        def featinv_resolve_feature(self, name):
            if name.startswith("fam."):
                raise FeatinvError("fam has no such member")

        @featinv.hookimpl
        def featinv_register_features(self, register):
            pass

    register_plugin(Family(), "fam")
    try:
        with pytest.raises(UnknownFeatureError, match="^Unknown feature 'fam.x': fam has no"):
            featinv.get_spec("fam.x")
    finally:
        unregister_plugin("fam")


def test_a_damaged_zoo_cache_is_rebuilt_and_odd_metadata_shown_as_unknown(tmp_path, monkeypatch,
                                                                           capsys):
    """Round 7: a zoo.json whose entries held NaN, a string or null where numbers belong (a
    damaged cache) broke 'featinv zoo' with 'TypeError: unsupported format string passed to
    NoneType.__format__' and put NaN into 'zoo --json'. A damaged cache is rebuilt; odd numbers
    in a decoder's own metadata are shown as unknown."""
    from featinv.inversion.zoo import clean_entry
    from helpers import run_cli

    monkeypatch.setenv("FEATINV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(listing, "_in_process_plugins", lambda: False)  # (other tests' plugins)
    good = listing.zoo(shipped)
    data = json.loads((tmp_path / "zoo.json").read_text())
    data["entries"][0].update(megabytes=float("nan"), width=None, parameters="lots",
                              val_psnr=True, val_ssim=float("inf"))
    (tmp_path / "zoo.json").write_text(json.dumps(data))
    assert listing.zoo(shipped) == good
    code, out, err = run_cli(capsys, "zoo", "--json")
    assert code == 0 and json.loads(out, parse_constant=lambda c: 1 / 0), err
    odd = clean_entry({"feature": "x", "megabytes": float("nan"), "width": "0.5", "epochs": True,
                       "val_psnr": 17.5, "parameters": 10, "recipe": 3})
    assert odd == {"feature": "x", "megabytes": None, "width": None, "epochs": None,
                   "val_psnr": 17.5, "parameters": 10, "recipe": None}
    entry = {**good[0], "width": None, "megabytes": None, "image_size": None, "preset": None}
    monkeypatch.setattr(listing, "zoo", lambda: [entry])
    code, out, err = run_cli(capsys, "zoo")
    assert code == 0 and "Error" not in err and good[0]["feature"] in out, err
