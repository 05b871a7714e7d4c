"""``pack`` refuses a file over the shipped-size limit it declares, unless told otherwise."""
import pytest

from featinv import CheckpointError
from featinv.cli.main import main
from featinv.inversion.load import ZOO_DIR
from featinv.inversion.shipped import MAX_SHIPPED_BYTES, pack

SOURCE = ZOO_DIR / "hog.safetensors"


@pytest.mark.slow
def test_pack_refuses_a_file_over_the_limit_before_writing(tmp_path):
    out = tmp_path / "big.safetensors"
    with pytest.raises(CheckpointError, match=r"MiB, more than the 0\.0 MiB a shipped decoder"):
        pack(SOURCE, out, max_bytes=1000)
    assert not out.exists()
    assert pack(SOURCE, out, max_bytes=None).stat().st_size > 1000
    size = pack(SOURCE, out).stat().st_size  # the default limit
    assert size <= MAX_SHIPPED_BYTES
    assert pack(SOURCE, out, max_bytes=size).stat().st_size == size  # the limit is inclusive
    with pytest.raises(CheckpointError):
        pack(SOURCE, out, max_bytes=size - 1)


@pytest.mark.slow
def test_pack_command_enforces_the_limit_unless_lifted(tmp_path, monkeypatch, capsys):
    import featinv.inversion.shipped

    monkeypatch.setattr(featinv.inversion.shipped, "MAX_SHIPPED_BYTES", 1000)
    out = tmp_path / "hog.safetensors"

    def run(*args):
        with pytest.raises(SystemExit) as info:
            main(["pack", str(SOURCE), "-o", str(out), *args])
        return info.value.code, capsys.readouterr()

    code, printed = run()
    assert code != 0 and "a shipped decoder may take" in printed.err and not out.exists()
    code, printed = run("--no-size-limit")
    assert code == 0 and out.is_file() and "MB" in printed.out
