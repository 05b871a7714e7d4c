"""A training run's checkpoint on disk: its decoder and training state as one pair, written
together and recognised when they are not one (see ``run_folder``'s description), and what
unfinished writes of a killed run leave in its folder."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import FeatinvError, printable
from ..io import checkpoint
from ..io.checkpoint import CHECKPOINT_KEY, DECODER_FILE, STATE_FILE
from ..io.files import STAGE_PREFIX, TEMP_PREFIX, name_final, signals_held

# temporary files of a killed write: featinv's prefix, or (older featinv) a run file's name
_OLD_TEMPS = re.compile(r"\.(decoder\.safetensors|train_state\.safetensors|metrics\.jsonl|"
                        r"val_epoch\d+\.png)\.[A-Za-z0-9_]+\.tmp")


def pair(folder: Path) -> tuple[dict | None, dict | None]:
    """The metadata of ``folder``'s decoder and training state: None for a missing file, ``{}``
    for one featinv cannot read."""
    found = []
    for name, kind in ((DECODER_FILE, checkpoint.FORMAT), (STATE_FILE, checkpoint.STATE_FORMAT)):
        path = folder / name
        if not (path.exists() or path.is_symlink()):
            found.append(None)
            continue
        try:
            found.append(checkpoint.read_meta(path, kind))
        except (FeatinvError, OSError):
            found.append({})
    return found[0], found[1]


def steps(decoder: dict, state: dict) -> tuple[object, object, bool]:
    """The decoder's and the state's step, and whether the two are one checkpoint (the same id;
    for files without one, from an older featinv: the same step)."""
    progress = decoder.get("progress") if isinstance(decoder.get("progress"), dict) else {}
    ids = progress.get(CHECKPOINT_KEY), state.get(CHECKPOINT_KEY)
    found = progress.get("step"), state.get("step")
    if None not in ids:
        return found[0], found[1], ids[0] == ids[1]
    return found[0], found[1], None in found or found[0] == found[1]


def complete(folder: Path) -> bool:
    """Whether ``folder`` holds a complete checkpoint: a decoder and a training state that
    featinv can read, written together."""
    decoder, state = pair(folder)
    return bool(decoder) and bool(state) and steps(decoder, state)[2]


def check_pair_for_resume(folder: Path, log: Callable[[str], None]) -> None:
    """A decoder from another checkpoint than the state (a run killed between the two renames):
    an older one is replaced at the next checkpoint (said); a newer one is refused, as resuming
    would go back to the state's step and replace it."""
    decoder, state = pair(folder)
    if not decoder or not state:
        return
    d_step, s_step, same = steps(decoder, state)
    if same:
        return
    if d_step == s_step:  # one step, two ids: no kill leaves that, the files are of two runs
        raise FeatinvError(f"{printable(folder)}: {DECODER_FILE} and {STATE_FILE} are both from "
                           f"step {s_step} but of two different checkpoints (their checkpoint "
                           "ids differ): they come from two runs. Put back the pair that "
                           "belongs together, or start over with --overwrite.")
    if isinstance(d_step, int) and isinstance(s_step, int) and d_step > s_step:
        raise FeatinvError(f"{printable(folder)}: {DECODER_FILE} is from step {d_step}, "
                           f"{STATE_FILE} from step {s_step} (two checkpoints); --resume would "
                           f"go back to step {s_step} and replace the newer decoder. Move "
                           f"{DECODER_FILE} elsewhere to keep it, then --resume continues from "
                           "the state.")
    log(f"{printable(folder)}: {DECODER_FILE} is from an earlier checkpoint (step {d_step}) "
        f"than {STATE_FILE} (step {s_step}), as a run killed while it saved leaves them; "
        "resuming from the state, the next checkpoint rewrites the decoder.")


def _fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable (best effort: not every system opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(folder: Path, write_state: Callable[[Path], object],
           write_decoder: Callable[[Path], object]) -> None:
    """Write a checkpoint into ``folder``: ``write_state(path)`` and ``write_decoder(path)``
    write the two files in full in a staging folder inside it; then the state and, last, the
    decoder are renamed into place, with SIGINT/SIGTERM/SIGHUP held. A failure leaves the
    folder's previous checkpoint, or (for a first one) no file of this one."""
    had = complete(folder)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=folder))
    try:
        write_state(stage / STATE_FILE)
        write_decoder(stage / DECODER_FILE)
        with signals_held():
            os.replace(stage / STATE_FILE, folder / STATE_FILE)
            try:
                os.replace(stage / DECODER_FILE, folder / DECODER_FILE)
            except BaseException:
                if not had:
                    (folder / STATE_FILE).unlink(missing_ok=True)
                raise
        _fsync_folder(folder)
    except BaseException as exc:
        name_final(exc, stage, folder)  # messages name folder/FILE, not the staging folder
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def remove_temporaries(folder: Path) -> int:
    """Remove what unfinished writes of a killed featinv process left directly in ``folder``
    (temporary files, staging folders; call it holding the folder's lock, so that no other
    process writes there); returns how many."""
    left = [p for p in folder.iterdir() if p.name.startswith((TEMP_PREFIX, STAGE_PREFIX))
            or _OLD_TEMPS.fullmatch(p.name)]
    for p in left:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            pass
    return len(left)
