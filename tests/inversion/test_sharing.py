"""Sharing decoders (issue 28): ``pack -o DIR`` writes a folder with a model card, ``push``
uploads it, and ``hf-hub:ORG/NAME[@REV]`` / ``local-dir:DIR`` load it wherever a decoder is
accepted. Offline only: the Hub's cache is a temporary folder laid out as huggingface_hub lays
it out, the upload is checked on huggingface_hub's own commit operations, and every socket
connection fails (no test reaches the network)."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import featinv
from featinv import CheckpointError, FeatinvError
from featinv.inversion.load import ZOO_DIR, load_decoder
from featinv.inversion.share import pack_folder
from featinv.inversion.shipped import describe
from featinv.io import hub
from featinv.training.loop import TrainConfig, train

from helpers import error_lines, run_cli, write_images

SHIPPED_HOG = ZOO_DIR / "hog.safetensors"
REPO = "my-lab/hog-decoder"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("test_sharing: no network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline, and a fake Hub whose commits land in it."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def lay_out(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main") -> Path:
    """Files as huggingface_hub caches a snapshot: blobs by hash, snapshots/COMMIT/NAME links to
    them, refs/REVISION holding the commit."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture
def fake_hub(hub_cache, monkeypatch):
    """huggingface_hub's HfApi with its network calls replaced: each call is recorded, and a
    commit's files are laid out in the cache, as a download after the push would."""
    from huggingface_hub import CommitOperationAdd, HfApi

    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        operations = list(operations)
        assert all(isinstance(op, CommitOperationAdd) for op in operations)
        files = {}
        for op in operations:
            data = Path(op.path_or_fileobj).read_bytes()
            assert op.upload_info.sha256 == hashlib.sha256(data).digest()
            assert op.upload_info.size == len(data)
            files[op.path_in_repo] = data
        calls.append(("create_commit", repo_id, {**kwargs, "files": sorted(files)}))
        lay_out(hub_cache, repo_id, files, kwargs.get("revision") or "main")

    for name, fake in [("create_repo", create_repo), ("create_branch", create_branch),
                       ("create_commit", create_commit)]:
        monkeypatch.setattr(HfApi, name, fake)
    monkeypatch.delenv("HF_HUB_OFFLINE")  # pushing needs the (fake) network
    return calls


def test_pack_writes_a_folder_with_a_model_card(tmp_path, capsys):
    code, out, err = run_cli(capsys, "pack", SHIPPED_HOG, "-o", tmp_path / "shared",
                             "--recipe", "featinv train -f hog ...", "--license", "cc-by-4.0")
    assert code == 0, err
    folder = tmp_path / "shared"
    assert sorted(p.name for p in folder.iterdir()) == sorted(hub.SHARED_FILES)
    assert f"local-dir:{folder}" in out
    card = (folder / "README.md").read_text()
    front = card.split("---")[1]
    assert "library_name: featinv" in front and "license: cc-by-4.0" in front
    assert "- hog" in front and "- feature-inversion" in front
    assert "featinv train -f hog ..." in card and "](reconstruction.png)" in card
    error = describe(SHIPPED_HOG)["val_normalized_error"]
    assert f"| {error:.3f} |" in card  # the validation error, from the metadata
    config = json.loads((folder / "config.json").read_text())
    assert config["library_name"] == "featinv" and config["feature"]["name"] == "hog"
    assert config["feature"]["params"]["cell_size"] == 8 and config["layout"]["channels"] == 31
    assert config["decoder"]["preset"] and config["metrics"]["normalized_error"] > 0
    assert config["recipe"] == "featinv train -f hog ..." and config["featinv_version"]
    from PIL import Image

    with Image.open(folder / "reconstruction.png") as picture:  # 2 rows of 4 squares
        assert picture.height * 2 - 4 < picture.width
    # loads by folder, like the file; existing files are refused; the single file still works
    assert torch.equal(featinv.invert(["skimage:coffee"], checkpoint=f"local-dir:{folder}",
                                      size=64)[0],
                       featinv.invert(["skimage:coffee"], checkpoint=SHIPPED_HOG, size=64)[0])
    code, _, err = run_cli(capsys, "pack", SHIPPED_HOG, "-o", folder)
    assert code == 1 and "exists already" in err
    code, _, err = run_cli(capsys, "pack", SHIPPED_HOG, "-o", tmp_path / "one.safetensors")
    assert code == 0 and (tmp_path / "one.safetensors").is_file()
    for bad in ("photo.jpg", "weights.pt"):
        code, _, err = run_cli(capsys, "pack", SHIPPED_HOG, "-o", tmp_path / bad)
        [line] = error_lines(err)
        assert code == 1 and ".safetensors file or a folder" in line
        assert not (tmp_path / bad).exists()
    code, _, err = run_cli(capsys, "pack", SHIPPED_HOG, "-o", tmp_path / "x", "--license", "a b")
    assert code == 1 and "licence identifier" in err


def test_push_load_by_hub_name_inverts_identically(hub_cache, fake_hub, tmp_path, capsys,
                                                   monkeypatch):
    code, out, err = run_cli(capsys, "push", SHIPPED_HOG, REPO, "--private", "--revision", "v1")
    assert code == 0, err
    assert out.strip() == f"hf-hub:{REPO}@v1"
    assert [c[0] for c in fake_hub] == ["create_repo", "create_branch", "create_commit"]
    assert fake_hub[0][2]["private"] is True and fake_hub[1][2]["branch"] == "v1"
    assert fake_hub[2][2]["revision"] == "v1"
    assert fake_hub[2][2]["files"] == sorted(hub.SHARED_FILES)
    snapshot = hub.cached_snapshot(hub.HubRef(REPO, "v1"))
    assert f"featinv invert -c hf-hub:{REPO}@v1" in (snapshot / "README.md").read_text()

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    outputs = {}
    for label, args in {"file": ["-c", SHIPPED_HOG], "hub": ["-c", f"hf-hub:{REPO}@v1"],
                        "decoder": ["-f", "hog", "--decoder", f"hf-hub:{REPO}@v1"]}.items():
        code, _, err = run_cli(capsys, "invert", *args, "skimage:astronaut", "--size", "96",
                               "-o", tmp_path / f"{label}.png")
        assert code == 0, err
        with Image.open(tmp_path / f"{label}.png") as img:  # the pixels: each PNG's mark
            outputs[label] = img.tobytes()                  # names its own decoder reference
    assert outputs["hub"] == outputs["file"] == outputs["decoder"]
    assert featinv.load_decoder(f"hf-hub:{REPO}@v1").meta["feature"]["name"] == "hog"
    code, out, err = run_cli(capsys, "zoo", "--json")
    assert code == 0, err
    [entry] = [e for e in json.loads(out) if e.get("plugin") == "hf-hub cache"]
    assert entry["decoder"] == f"hf-hub:{REPO}@v1" and entry["feature"] == "hog"
    code, out, _ = run_cli(capsys, "zoo")
    assert f"hf-hub:{REPO}@v1" in out
    # no main branch was pushed: the name without a revision is not cached
    code, _, err = run_cli(capsys, "invert", "-c", f"hf-hub:{REPO}", "skimage:astronaut",
                           "-o", tmp_path / "main.png")
    [line] = error_lines(err)
    assert code == 1 and "HF_HUB_OFFLINE" in line and "not in the Hugging Face cache" in line


def test_a_mismatched_hub_decoder_is_refused_naming_both(hub_cache, fake_hub, tmp_path, capsys,
                                                         monkeypatch):
    code, _, err = run_cli(capsys, "push", SHIPPED_HOG, REPO)
    assert code == 0, err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(capsys, "invert", "-f", "lbp", "-c", f"hf-hub:{REPO}",
                           "skimage:coffee", "-o", tmp_path / "x.png")
    [line] = error_lines(err)
    assert code == 1 and f"hf-hub:{REPO} is a decoder for 'hog', not 'lbp'" in line
    with pytest.raises(CheckpointError, match=r"with cell_size=8, not 'hog' with cell_size=4"):
        load_decoder(f"hf-hub:{REPO}", feature="hog", params={"cell_size": 4})


@pytest.mark.slow
def test_a_float32_pack_of_a_training_run_loads_with_the_same_weights(tmp_path, hub_cache,
                                                                      fake_hub, monkeypatch):
    write_images(tmp_path / "data", 8)
    train(TrainConfig(feature="hog", data=str(tmp_path / "data"), out=str(tmp_path / "run"),
                      image_size=32, epochs=1, batch_size=4, workers=0, device="cpu",
                      precision="fp32", preset="residual"), log=lambda _: None)
    featinv.inversion.share.push(tmp_path / "run", REPO, half=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    original = load_decoder(tmp_path / "run")
    packed = pack_folder(tmp_path / "run", tmp_path / "p", half=False)
    for ref in (f"hf-hub:{REPO}", f"local-dir:{packed}"):
        loaded = load_decoder(ref)
        assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                       loaded.state_dict().values())), ref
        assert loaded.meta["packed"]["history"]  # the run's validation history came along
    folder = pack_folder(tmp_path / "p", tmp_path / "again")  # a packed folder packs again
    assert load_decoder(folder).meta["packed"]["history"]
    logs = []  # --init-from takes the same names
    train(TrainConfig(feature="hog", data=str(tmp_path / "data"), out=str(tmp_path / "tuned"),
                      image_size=32, epochs=1, batch_size=4, workers=0, device="cpu",
                      precision="fp32", preset="residual", init_from=f"hf-hub:{REPO}"),
          log=logs.append)
    assert any(f"starting from the weights of hf-hub:{REPO}" in m for m in logs)


def test_offline_without_the_cache_is_one_line_at_once(hub_cache, capsys, tmp_path):
    code, _, err = run_cli(capsys, "invert", "-c", "hf-hub:nobody/nothing", "skimage:coffee",
                           "-o", tmp_path / "x.png")
    [line] = error_lines(err)
    assert code == 1 and "hf-hub:nobody/nothing is not in the Hugging Face cache" in line
    assert str(hub_cache) in line and "Traceback" not in err
    # the decision needs neither torch nor huggingface_hub: it is taken before either loads
    script = ("import sys, time; t = time.perf_counter()\n"
              "from featinv.inversion.sources import decoder_file\n"
              "try:\n    decoder_file('hf-hub:nobody/nothing@v2')\n"
              "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
              "print(round(time.perf_counter() - t, 3), 'torch' in sys.modules,"
              " 'huggingface_hub' in sys.modules)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hub_cache)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=60)
    wall = time.perf_counter() - start
    message, timing = done.stdout.strip().splitlines()
    assert message.startswith("CheckpointError hf-hub:nobody/nothing@v2 is not in the")
    seconds, torch_loaded, hub_loaded = timing.split()
    assert (torch_loaded, hub_loaded) == ("False", "False")
    assert float(seconds) < 1.0 and wall < 10, (seconds, wall)


def test_online_loading_goes_through_snapshot_download(hub_cache, monkeypatch, tmp_path):
    """Without HF_HUB_OFFLINE, huggingface_hub fetches into its cache (replaced here: the call's
    arguments are checked) and its errors become one line."""
    import huggingface_hub
    from huggingface_hub import errors

    snapshot = lay_out(hub_cache, REPO, {"model.safetensors": SHIPPED_HOG.read_bytes(),
                                         "config.json": b'{"library_name": "featinv"}'})
    monkeypatch.delenv("HF_HUB_OFFLINE")
    seen = []

    def fetch(repo_id, **kwargs):
        seen.append((repo_id, kwargs))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fetch)
    assert load_decoder(f"hf-hub:{REPO}@abc").meta["feature"]["name"] == "hog"
    [(repo_id, kwargs)] = seen
    assert repo_id == REPO and kwargs["revision"] == "abc"
    assert kwargs["cache_dir"] == hub_cache and "model.safetensors" in kwargs["allow_patterns"]
    assert kwargs["library_name"] == "featinv"

    class Response:  # what huggingface_hub's HTTP errors carry
        status_code, headers, url, request = 404, {}, "https://hub", None

    for error, words in [(errors.RepositoryNotFoundError, "no such model"),
                         (errors.RevisionNotFoundError, "no revision"),
                         (errors.LocalEntryNotFoundError, "cannot reach the Hugging Face Hub")]:
        def fail(repo_id, **kwargs):
            raise (error("missing") if error is errors.LocalEntryNotFoundError
                   else error("missing", response=Response()))

        monkeypatch.setattr(huggingface_hub, "snapshot_download", fail)
        with pytest.raises(CheckpointError, match=words) as info:
            load_decoder(f"hf-hub:{REPO}@abc")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("ref, words", [
    ("hf-hub:noslash", "not a Hub repository name"),
    ("hf-hub:a/b/c", "not a Hub repository name"),
    ("hf-hub:org/na--me", "not a Hub repository name"),
    ("hf-hub:org/name@", "not a revision"),
    ("hf-hub:org/name@bad rev", "not a revision"),
])
def test_bad_hub_names_are_one_line(ref, words, hub_cache):
    with pytest.raises(FeatinvError, match=words):
        load_decoder(ref)


def test_push_refuses_before_packing(hub_cache, tmp_path, capsys):
    code, _, err = run_cli(capsys, "push", SHIPPED_HOG, REPO)  # HF_HUB_OFFLINE=1
    [line] = error_lines(err)
    assert code == 1 and "HF_HUB_OFFLINE" in line
    code, _, err = run_cli(capsys, "push", SHIPPED_HOG, "not a repo")
    [line] = error_lines(err)
    assert code == 1 and "not a Hub repository name" in line


@pytest.mark.slow
def test_push_reports_a_refusal_of_the_hub_in_one_line(hub_cache, fake_hub, monkeypatch, capsys):
    from huggingface_hub import HfApi, errors

    def no_token(self, repo_id, **kwargs):
        raise errors.LocalTokenNotFoundError("no token")

    monkeypatch.setattr(HfApi, "create_repo", no_token)
    code, _, err = run_cli(capsys, "push", SHIPPED_HOG, REPO)
    [line] = error_lines(err)
    assert code == 1 and "HF_TOKEN" in line


@pytest.mark.slow
def test_zoo_lists_cached_hub_decoders_without_pytorch(tmp_path):
    """``featinv zoo`` lists what the Hub cache holds (featinv decoders only) from the files'
    headers: with a warm listing cache, PyTorch is still not imported."""
    cache = tmp_path / "hf-cache"
    model = SHIPPED_HOG.read_bytes()
    lay_out(cache, REPO, {"model.safetensors": model,
                          "config.json": b'{"library_name": "featinv"}'}, "v1")
    lay_out(cache, "other-lab/a-classifier", {"model.safetensors": model,
                                              "config.json": b'{"library_name": "timm"}'})
    lay_out(cache, "my-lab/broken", {"model.safetensors": b"junk",
                                     "config.json": b'{"library_name": "featinv"}'})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "FEATINV_CACHE_DIR": str(tmp_path / "listing")}
    script = ("import sys\nfrom featinv.cli.main import main\ntry:\n    main(['zoo', '--json'])\n"
              "except SystemExit:\n    pass\nprint('torch' in sys.modules)\n")
    for _ in range(3):  # the first run fills the listing cache (and may import PyTorch)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=300)
        if done.stdout.strip().endswith("False"):
            break
    assert done.stdout.strip().endswith("False"), done.stderr
    entries = json.loads(done.stdout.strip().rsplit("\n", 1)[0])
    hub_entries = {e["decoder"]: e for e in entries if e.get("plugin") == "hf-hub cache"}
    assert set(hub_entries) == {f"hf-hub:{REPO}@v1", "hf-hub:my-lab/broken"}
    good = hub_entries[f"hf-hub:{REPO}@v1"]
    assert good["feature"] == "hog" and good["val_normalized_error"] == pytest.approx(
        describe(SHIPPED_HOG)["val_normalized_error"])
    assert "error" in hub_entries["hf-hub:my-lab/broken"]


def test_a_pack_folder_stopped_on_the_way_keeps_the_old_folder_whole(tmp_path, monkeypatch):
    """Round 7: 'pack SRC -o DIR --overwrite' replaced DIR/model.safetensors first, then drew the
    picture; SIGTERM (or a failure) there left the new model beside the old card, config and
    picture. The four files are now moved in together once all are written."""
    import featinv.inversion.share as share

    out = pack_folder(SHIPPED_HOG, tmp_path / "pk")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(share, "save_png", stopped)
    with pytest.raises(KeyboardInterrupt):
        pack_folder(SHIPPED_HOG, out, overwrite=True, half=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no stage folder left
    monkeypatch.undo()
    pack_folder(SHIPPED_HOG, out, overwrite=True, half=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)
    assert (out / "model.safetensors").read_bytes() != before["model.safetensors"]
