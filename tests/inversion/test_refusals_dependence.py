"""Decoders whose pictures do not depend on the features (issue 24, round 13: N1, N7).

N1: the last layer or the first convolution zeroed gave one flat picture for every image; pack
refused such a file, but invert, evaluate and audit drew it with exit code 0 (audit then said
the representation barely leaks). The first convolution scaled by 1e-4 and the batch-norm gains
zeroed passed pack as well. N7: statistics of exactly 0 and 1 passed once the metadata's
``training`` was deleted; round 14 took the batch-norm layers' batch counts as a sign of training
that sets them, but a decoder trained in one's own loop counts batches too (round 15, D2)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import featinv
from featinv.decoders.networks import build_decoder
from featinv.errors import CheckpointError
from featinv.inversion import probes
from featinv.inversion.load import read_decoder
from featinv.inversion.pipeline import Inverter
from featinv.io.checkpoint import decoder_metadata, save_decoder

from helpers import error_lines, run_cli, write_images
from inversion.test_refusals_decoders import fp32_copy

STEM, LAST = "body.stem.0.weight", "body.expand.2.0."
DOCS = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"


def scaled(prefix: str, factor: float):
    def edit(tensors):
        for name in tensors:
            if name.startswith(prefix):
                tensors[name].mul_(factor)
    return edit


def bn_gains_zeroed(tensors):
    for name in tensors:
        if name.endswith("body.3.weight"):  # the second batch norm of every residual block
            tensors[name].zero_()


class TestDecodersWhosePicturesDoNotDependOnTheFeatures:
    @pytest.mark.parametrize("edit, words", [
        (scaled(LAST, 0.0), "do not depend on the features (two different feature arrays give "
         "the same picture)"),
        (scaled(STEM, 0.0), "do not depend on the features"),
        (scaled(STEM, 1e-4), "hardly depend on the features"),
        (bn_gains_zeroed, "has every gain below 0.0001")],
        ids=["last_zero", "stem_zero", "stem_x1e-4", "bn_gains_zero"])
    def test_loading_refuses_them_in_one_line(self, tmp_path, edit, words):
        bad = fp32_copy(tmp_path / "bad.safetensors", edit)
        with pytest.raises(CheckpointError, match="weights were zeroed or damaged") as info:
            Inverter.load(bad, device="cpu")
        assert words in str(info.value) and "\n" not in str(info.value)

    @pytest.mark.parametrize("command", ["invert", "evaluate", "pack"])
    def test_the_commands_refuse_them(self, tmp_path, capsys, command):
        bad = fp32_copy(tmp_path / "bad.safetensors", scaled(STEM, 1e-4))
        images = tmp_path / "images"
        write_images(images, 1, size=(32, 32))
        args = {"invert": ["invert", "-c", bad, images, "-o", tmp_path / "out"],
                "evaluate": ["evaluate", "-c", bad, "--data", images],
                "pack": ["pack", bad, "-o", tmp_path / "p.safetensors"]}[command]
        code, _, err = run_cli(capsys, *args)
        [line] = error_lines(err)
        assert code == 1 and "hardly depend on the features" in line
        assert not (tmp_path / "out").exists() and not (tmp_path / "p.safetensors").exists()

    @pytest.mark.parametrize("name", ["hog", "hog.realistic", "lbp", "sift", "squeezenet.conv1",
                                      "squeezenet.fire3", "squeezenet.fire5", "squeezenet.fire7",
                                      "squeezenet.fire9", "squeezenet.conv10",
                                      "squeezenet.pool10"])
    def test_the_shipped_decoders_pass(self, name):
        assert probes.dependence_fault(read_decoder(name)) is None

    @pytest.mark.parametrize("feature, preset, width", [
        ("sift", "compact", None), ("sift", "compact", 0.125), ("hog", "paper", 0.25),
        ("squeezenet.fire9", "compact", 0.125), ("lbp", "residual", 0.125)])
    def test_untrained_decoders_pass(self, tmp_path, feature, preset, width):
        """Untrained networks of the paper's presets hardly depend on their input (SIFT's
        compact one: pictures 4e-6 apart), and are only refused when identical."""
        torch.manual_seed(0)
        ext = featinv.get_feature(feature)
        decoder = build_decoder(ext.spec, ext.layout(48, 48), 48, preset, width)
        path = save_decoder(decoder, tmp_path / "d.safetensors", decoder_metadata(ext, decoder))
        assert probes.dependence_fault(read_decoder(path)) is None
        Inverter.load(path, device="cpu")

    def test_pictures_close_together_after_many_steps_are_no_sign(self):
        """Round 15 (D1): pictures 2.5e-5 of their range apart, 5000 steps, weights moved by
        training: SIFT's compact preset at --lr 3e-4 leaves such decoders. Only one picture for
        both arrays is refused without other evidence (a validation error, a layer shrunk)."""
        ext = featinv.get_feature("hog")
        torch.manual_seed(0)
        decoder = build_decoder(ext.spec, ext.layout(32, 32), 32, "residual", 0.125)
        out = torch.full((2, 3, 8, 8), 0.5)
        out[:, :, 0] = 0.9
        out[1, 0, 1, 1] += 1e-5  # 2.5e-5 of the range apart
        for buffer in (b for n, b in decoder.named_buffers() if n.endswith("num_batches_tracked")):
            buffer.fill_(5000)
        with torch.no_grad():
            decoder.body.stem[0].weight.mul_(1.5)  # moved by training, not far
        decoder.meta = {"training": {"feature": "hog"}, "metrics": {"step": 5000}}
        assert not probes.as_initialised(decoder)
        assert probes.dependence_fault(decoder, out) is None
        decoder.meta["metrics"]["val_normalized_error"] = 0.4  # one picture cannot score that
        assert "validation error of 0.4" in probes.dependence_fault(decoder, out)
        decoder.meta = {}
        out[1] = out[0]  # one picture: refused however little it trained
        assert "do not depend" in probes.dependence_fault(decoder, out)

    def test_the_messages_are_in_the_troubleshooting_page(self):
        page = DOCS.read_text()
        for words in ("its pictures do not depend on the features (two different feature "
                      "arrays give the same picture); its weights were zeroed or damaged",
                      "its pictures hardly depend on the features", "which training never "
                      "leaves: that layer's output is the same for any features",
                      "its metadata says it was trained, which sets them from the training "
                      "images"):
            assert words in page, words


class TestZeroOneStatisticsWithoutTrainingMetadata:
    @staticmethod
    def zero_one(tensors):
        tensors["feature_std"].fill_(1)
        tensors["feature_mean"].zero_()

    @pytest.mark.parametrize("deleted", [(), ("training",), ("training", "metrics"),
                                         ("training", "metrics", "packed")])
    def test_only_the_training_record_has_them_refused(self, tmp_path, deleted):
        """Round 15 (D2): batch counts do not tell featinv's training, which sets the
        statistics, from one's own loop, which need not: without the metadata's 'training' the
        decoder loads (a documented limit)."""
        import json

        from safetensors import safe_open
        from safetensors.torch import save_file

        path = fp32_copy(tmp_path / "d.safetensors", self.zero_one)
        with safe_open(str(path), "pt") as f:
            tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
        inner = json.loads(meta["featinv"])
        for key in deleted:
            inner.pop(key, None)
        save_file(tensors, str(path), metadata={**meta, "featinv": json.dumps(inner)})
        if "training" in deleted:
            Inverter.load(path, device="cpu")
            return
        with pytest.raises(CheckpointError, match="built without statistics") as info:
            Inverter.load(path, device="cpu")
        assert "but its metadata says it was trained" in str(info.value)

    def test_metadata_copied_onto_an_untrained_network_is_no_sign(self):
        """Tests and earlier versions write 'metrics' onto untrained decoders, and 'training'
        too: a network as featinv built it (round 14) is untrained whatever its metadata says."""
        ext = featinv.get_feature("hog")
        decoder = build_decoder(ext.spec, ext.layout(32, 32), 32, "compact", 0.125)
        decoder.meta = {"metrics": {"step": 5000}, "progress": {"step": 5000}}
        assert probes.trained_by(decoder) is None
        decoder.meta["training"] = {"feature": "hog"}
        assert probes.trained_by(decoder) is None  # untouched weights
        with torch.no_grad():
            decoder.body.stream_a[0][0].weight.mul_(2)  # no longer as drawn
        assert probes.trained_by(decoder) == "its metadata says it was trained"

    def test_an_untrained_decoder_without_statistics_is_not_judged(self, tmp_path):
        for preset in ("compact", "residual"):
            ext = featinv.get_feature("hog")
            decoder = build_decoder(ext.spec, ext.layout(32, 32), 32, preset, 0.125)
            assert probes.trained_by(decoder) is None
            path = save_decoder(decoder, tmp_path / f"{preset}.safetensors",
                                decoder_metadata(ext, decoder))
            Inverter.load(path, device="cpu")
