"""What a file that should have been a ``.safetensors`` checkpoint is instead, told from its
first bytes (and a zip's first and last few kB), for the refusal to name it: an archive to
unpack, a pickled PyTorch file (never unpickled), an image, a text file, a file of the kernel.
Nothing is decompressed, unpickled or parsed beyond a few kB."""
from __future__ import annotations

from pathlib import Path

IMAGE_ADVICE = "images are the command's inputs; a decoder is a .safetensors file"
# first bytes -> (what the file is, what to do); the first match wins
MAGIC = (
    (b"\x1f\x8b", "a gzip-compressed file (.gz, .tgz)", "unpack it first (gunzip, or tar -xzf "
     "for a .tgz) and pass the .safetensors file inside"),
    (b"BZh", "a bzip2-compressed file (.bz2)", "unpack it first and pass the .safetensors file "
     "inside"),
    (b"\xfd7zXZ\x00", "an xz-compressed file (.xz)", "unpack it first and pass the .safetensors "
     "file inside"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file (.zst)", "unpack it first and pass the "
     ".safetensors file inside"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "unpack it first and pass the .safetensors file "
     "inside"),
    (b"Rar!\x1a\x07", "a RAR archive", "unpack it first and pass the .safetensors file inside"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", IMAGE_ADVICE),
    (b"\xff\xd8\xff", "a JPEG image", IMAGE_ADVICE),
    (b"GIF8", "a GIF image", IMAGE_ADVICE),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5?)", "featinv reads decoders only as "
     ".safetensors files"),
    (b"\x93NUMPY", "a NumPy array (.npy)", "featinv reads decoders only as .safetensors files"),
    (b"version https://git-lfs", "a Git LFS pointer (the file it stands for was not fetched)",
     "fetch the file itself (git lfs pull)"),
)
TAR_MAGIC = b"ustar"  # at byte 257 of a tar archive
PICKLE = "looks like a pickled PyTorch file; featinv never unpickles files. Convert the " \
    "weights to safetensors first."
HEAD_BYTES = 512
ZIP_TAIL = 4096  # bytes read at a zip's end for its directory's last entries


def kernel_file(path: str | Path) -> str | None:
    """``proc`` or ``sys`` for a file of the kernel (generated as it is read, its size a
    placeholder; some block on reading: /proc/kmsg), else None."""
    try:
        real = Path(path).resolve()
    except (OSError, RuntimeError):
        return None
    return real.parts[1] if str(real).startswith(("/proc/", "/sys/")) else None


def what_it_is(path: str | Path) -> str | None:
    """``"WHAT, not a safetensors file; WHAT TO DO."`` for a file of a kind featinv knows by its
    first bytes, else None."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
    for magic, what, advice in MAGIC:
        if head.startswith(magic):
            return f"{what}, not a safetensors file; {advice}."
    if head[257:262] == TAR_MAGIC:
        return ("a tar archive, not a safetensors file; unpack it first (tar -xf) and pass the "
                ".safetensors file inside.")
    kind = _zip_kind(path) if head.startswith(b"PK") else None
    if kind == "numpy":
        return ("a NumPy archive (.npz), not a featinv decoder or training state; decoders are "
                ".safetensors files written by 'featinv train' or 'featinv pack'.")
    if kind == "torch" or (head[:1] == b"\x80" and head[1:2] in (b"\2", b"\3", b"\4", b"\5")
                           and head[2:8] != bytes(6)):  # not a safetensors header's length
        return PICKLE
    if kind == "zip":
        return ("a zip archive, not a safetensors file; unpack it first and pass the "
                ".safetensors file inside (featinv reads decoders only as .safetensors files).")
    if head[:1] in (b"{", b"[") and b"\0" not in head:
        return ("a JSON file, not a safetensors file; featinv reads decoders only as "
                ".safetensors files (a training run's is OUT/decoder.safetensors).")
    if head and _text(head):
        return ("a text file, not a safetensors file; featinv reads decoders only as "
                ".safetensors files (a training run's is OUT/decoder.safetensors).")
    return None


def _text(head: bytes) -> bool:
    """Whether ``head`` reads as text (UTF-8 without control characters but tabs and line
    ends; a multi-byte character cut at the end is allowed)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _zip_kind(path: str | Path) -> str:
    """'torch' (torch.save's zip: a data.pkl inside), 'numpy' (only .npy members) or 'zip', from
    the names of the first member (its local header, at the start) and of the directory entries
    within the last ``ZIP_TAIL`` bytes: a bounded read, never the whole directory (a forged one
    can list millions of members), nothing decompressed."""
    names = []
    try:
        with open(path, "rb") as f:
            head = f.read(30 + 256)
            if head[:4] == b"PK\x03\x04":
                names.append(head[30:30 + int.from_bytes(head[26:28], "little")])
            size = f.seek(0, 2)
            f.seek(max(0, size - ZIP_TAIL))
            tail = f.read(ZIP_TAIL)
    except (OSError, ValueError):
        return "zip"
    at = tail.find(b"PK\x01\x02")
    while at != -1 and at + 46 <= len(tail):
        length = int.from_bytes(tail[at + 28:at + 30], "little")
        names.append(tail[at + 46:at + 46 + length])
        at = tail.find(b"PK\x01\x02", at + 46)
    names = [n for n in names if n]
    if any(n.endswith(b"data.pkl") for n in names):
        return "torch"
    return "numpy" if names and all(n.endswith(b".npy") for n in names) else "zip"
