"""featinv's ``.safetensors`` files at any path, written without copying the whole state, and
an allocation failure always the documented out-of-memory line (issue 24, round 11: E4, E6).

E4: a run folder whose name is not UTF-8 was written by ``train`` (exit 0) and read by nothing:
safetensors takes paths as UTF-8 text, and every reader blamed truncation. E6: PyTorch's
"DefaultCPUAllocator: can't allocate memory" (a RuntimeError) struck in the copy the final save
made of every tensor, and was printed as an internal error; the run was lost.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file as library_load

import featinv
import featinv.io.checkpoint as ckpt
from featinv.io.checkpoint import DECODER_FILE, STATE_FILE
from featinv.io.tensor_files import _data, load_file, save_file, utf8_path

from helpers import error_lines, run_cli, write_images

OOM = ("out of memory: this work needs more memory than the machine has left; use a smaller "
       "--size, --max-side, --image-size, --batch-size or --limit.")
ODD = os.fsdecode(b"run\xff")  # a name POSIX allows whose bytes are not UTF-8


def train_args(data, out, budget, *extra):
    return ["train", "-f", "hog", "--data", data, "-o", out, "--image-size", 32, "--budget",
            budget, "--batch-size", 4, "--device", "cpu", "--workers", 0, "--precision", "fp32",
            *extra]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images") / "data"
    write_images(folder, 4, size=(40, 40))
    return folder


def _tensors():
    generator = torch.Generator().manual_seed(0)
    return {"conv": torch.randn(4, 3, 5, 5, generator=generator)
            .to(memory_format=torch.channels_last),  # not contiguous: made so while written
            "t": torch.randn(3, 6, generator=generator).t(), "count": torch.tensor(7),
            "half": torch.randn(5, generator=generator).half(), "empty": torch.zeros(0, 2),
            "flag": torch.tensor([True, False]), "bf": torch.randn(3, generator=generator)
            .bfloat16()}


class TestSafetensorsAtAnyPath:
    def test_written_files_are_what_safetensors_reads(self, tmp_path):
        tensors = _tensors()
        save_file(tensors, tmp_path / "a.safetensors", {"featinv": '{"x": "r\\udcff"}'})
        back = library_load(str(tmp_path / "a.safetensors"))
        assert sorted(back) == sorted(tensors)
        for name, value in tensors.items():
            assert back[name].dtype == value.dtype and torch.equal(back[name], value), name
        with safe_open(str(tmp_path / "a.safetensors"), "pt") as f:
            assert json.loads(f.metadata()["featinv"]) == {"x": "r\udcff"}

    def test_a_path_that_is_not_utf8_is_written_and_read(self, tmp_path):
        path = tmp_path / f"{ODD}.safetensors"
        assert not utf8_path(path) and utf8_path(tmp_path / "a")
        save_file(_tensors(), path)
        assert os.fsencode(path).endswith(b"run\xff.safetensors")
        back = load_file(path)
        assert all(torch.equal(back[k], v) for k, v in _tensors().items())

    def test_a_contiguous_cpu_tensor_is_written_from_its_own_memory(self):
        weight = torch.randn(64, 32)
        assert np.shares_memory(np.asarray(_data(weight)), weight.numpy())
        strided = weight.t()
        assert bytes(_data(strided)) == strided.contiguous().numpy().tobytes()

    def test_a_run_in_a_folder_whose_name_is_not_utf8_works_end_to_end(self, capsys, data,
                                                                       tmp_path):
        run = tmp_path / ODD
        for extra in ((8,), (16, "--resume")):
            code, _, err = run_cli(capsys, *train_args(data, run, *extra))
            assert code == 0, err
        assert featinv.load_decoder(run / DECODER_FILE).meta["progress"]["step"] == 4
        code, _, err = run_cli(capsys, "invert", "-c", run, data / "img000.png", "-o",
                               tmp_path / f"{ODD}.png")
        assert code == 0 and (tmp_path / f"{ODD}.png").is_file(), err
        packed, folder = tmp_path / f"{ODD}.safetensors", tmp_path / f"{ODD}-shared"
        for out in (packed, folder):
            code, _, err = run_cli(capsys, "pack", run, "-o", out)
            assert code == 0, err
        assert featinv.load_decoder(packed).meta["packed"]["dtype"] == "float16"
        assert featinv.load_decoder(f"local-dir:{folder}").meta["feature"]["name"] == "hog"
        assert "local-dir:" in (folder / "README.md").read_text(encoding="utf-8")


class TestAllocationFailure:
    @pytest.mark.parametrize("error", [
        RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                     "allocate memory: you tried to allocate 33554432 bytes. Error code 12 "
                     "(Cannot allocate memory)"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError()])
    def test_is_the_documented_line(self, capsys, monkeypatch, error):
        from featinv.cli import main as cli_main

        def fail(*_a, **_k):
            raise error
        monkeypatch.setattr(cli_main.cli, "main", fail)
        code, _, err = run_cli(capsys, "plugins")
        assert code == 1 and error_lines(err) == [f"Error: {OOM}"], err

    def test_another_runtime_error_is_not_taken_for_one(self, capsys, monkeypatch):
        from featinv.cli import main as cli_main

        def fail(*_a, **_k):
            raise RuntimeError("shape mismatch")
        monkeypatch.setattr(cli_main.cli, "main", fail)
        code, _, err = run_cli(capsys, "plugins")
        assert code == 1 and "RuntimeError: shape mismatch" in err and "out of memory" not in err

    def test_while_saving_keeps_the_previous_checkpoint(self, capsys, monkeypatch, data,
                                                        tmp_path):
        run = tmp_path / "run"
        code, _, err = run_cli(capsys, *train_args(data, run, 8))
        assert code == 0, err
        before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        real = ckpt.save_file

        def fail(tensors, path, metadata=None):
            if STATE_FILE in os.path.basename(path):
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                                   "allocate 33554432 bytes.")
            return real(tensors, path, metadata=metadata)
        monkeypatch.setattr(ckpt, "save_file", fail)
        code, _, err = run_cli(capsys, *train_args(data, run, 16, "--resume"))
        assert code == 1 and error_lines(err) == [  # train's own options
            f"Error: {OOM.replace('--size, --max-side, ', '')}"], err
        after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        assert {k: after[k] for k in (DECODER_FILE, STATE_FILE)} == \
            {k: before[k] for k in (DECODER_FILE, STATE_FILE)}
        assert not [p for p in Path(run).iterdir() if p.name.startswith(".featinv-")]
