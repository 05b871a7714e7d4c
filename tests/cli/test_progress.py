"""Progress: a tqdm bar on a terminal, occasional plain lines in logs, nothing with FEATINV_PROGRESS=0."""
import io

from featinv.progress import Progress, StepProgress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_logs_get_plain_lines_only_now_and_then():
    log = io.StringIO()
    with Progress(4, "evaluating hog", "images", file=log, interval=0) as bar:
        bar.update(2)
        bar.update(2, psnr="17.5")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 2  # one per update, the end shown
    assert lines[0].startswith("evaluating hog: 2/4 images (50%), ")
    assert lines[1].startswith("evaluating hog: 4/4 images (100%), psnr 17.5, ")
    slow = io.StringIO()
    with Progress(4, "slow", file=slow, interval=0) as bar:
        bar.update(1)
        bar.interval = 3600  # later updates come sooner than that: the end gets its own line
        bar.update(3)
    assert [line[:10] for line in slow.getvalue().splitlines()] == ["slow: 1/4 ", "slow: 4/4 "]
    quiet = io.StringIO()
    with Progress(4, "short", file=quiet) as bar:  # done before the first 30 s: no line at all
        bar.update(4)
    assert quiet.getvalue() == ""


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    term = Terminal()
    with Progress(3, "perturbing hog", "perturbations", file=term) as bar:
        for name in ("none", "binarize", "dropout"):
            bar.update(1, last=name)
    text = term.getvalue()
    assert "\r" in text and "perturbing hog" in text and "3/3" in text
    monkeypatch.setenv("FEATINV_PROGRESS", "0")
    silent = Terminal()
    with Progress(3, "x", file=silent) as bar:
        bar.update(3)
    assert silent.getvalue() == ""


def test_step_progress_shows_each_optimisation_run():
    log = io.StringIO()
    callback = StepProgress(20, "optimising hog", file=log, interval=0)
    for run in range(2):  # two image batches, 20 steps each, reported every 10
        callback(10, 0.5 - run / 10)
        callback(20, 0.25 - run / 10)
    lines = log.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in log.getvalue()
    assert lines[1].startswith("optimising hog: 20/20 steps (100%), objective 0.2500")
    assert lines[2].startswith("optimising hog: 10/20 steps (50%), objective 0.4000")


def test_optimisation_baseline_writes_no_carriage_returns_to_logs(capsys, tmp_path):
    from helpers import run_cli as run

    code, out, err = run(capsys, "invert", "--method", "optimize", "-f", "hog", "--steps", "20",
                         "--size", "48", "skimage:astronaut", "-o", str(tmp_path))
    assert code == 0 and out.strip().endswith(".png")
    assert "\r" not in err
