"""The command line: the LM demo on a tiny corpus, resume, generate from its checkpoint, the adding demo.

A failed command exits with code 2 and an argparse-style message naming the flag, and leaves the run
directory's bytes as they were (every file hashed before and after).
"""

import hashlib
import json
import shutil

import jax
import pytest

from rnnjax.apps import cli

TINY = ["--hidden", "16", "--embed", "8", "--batch", "4", "--window", "16", "--kn-order", "3", "--max-chars", "4000"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text("def f(x):\n    return x + 1\n" * 200)
    return path


@pytest.fixture(scope="module")
def trained_run(corpus, tmp_path_factory):
    """A run directory of 20 steps of the tiny model: a checkpoint at step 20, config, vocabulary, metrics."""
    run = tmp_path_factory.mktemp("trained") / "run"
    cli.main(["demo", "--corpus", str(corpus), "--steps", "20", "--run-dir", str(run), *TINY])
    return run


@pytest.fixture
def run(trained_run, tmp_path):
    """A copy of ``trained_run`` for one test to resume or damage."""
    return shutil.copytree(trained_run, tmp_path / "run")


def snapshot(directory):
    """Every path under ``directory`` with its file's SHA-256 (None for a folder)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


def fails(argv, capsys) -> str:
    """Run the command; it must exit with code 2 (argparse's usage error). Returns what it printed to stderr."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.slow
def test_demo_trains_saves_and_generates(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    cli.main(["demo", "--corpus", str(corpus), "--steps", "40", "--run-dir", str(run), *TINY])
    out = capsys.readouterr().out
    assert "validation bits per character" in out and "--- beam ---" in out
    results = json.loads((run / "results.json").read_text())
    assert results["lm_valid_bpc"] > 0 and set(results["kn_valid_bpc"]) == {"2", "3"}
    assert {"greedy", "sample", "beam"} == set(results["samples"])

    cli.main(["demo", "--corpus", str(corpus), "--steps", "60", "--run-dir", str(run), "--resume", *TINY])
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [40, 50, 60]  # resumed at the step-40 checkpoint, no step repeated
    capsys.readouterr()

    cli.main(["generate", "--checkpoint", str(run), "--prompt", "def", "--length", "12", "--beam", "2"])
    out = capsys.readouterr().out
    assert out.count("--- ") == 3 and "def" in out


# --- 1. a run directory that holds a run is not overwritten -------------------------------------


@pytest.mark.parametrize("hidden", ["16", "32"], ids=["same-model", "other-model"])
def test_demo_over_an_earlier_run_without_resume_is_refused(corpus, run, hidden, capsys):
    before = snapshot(run)
    err = fails(
        ["demo", "--corpus", str(corpus), "--steps", "20", "--run-dir", str(run), *TINY, "--hidden", hidden], capsys
    )
    assert "--run-dir" in err and "--resume" in err and "checkpoint at step 20" in err
    assert snapshot(run) == before


# --- 2. a resume is checked against the saved configuration and vocabulary first -----------------


def test_resume_with_another_model_is_refused(corpus, run, capsys):
    before = snapshot(run)
    argv = ["demo", "--corpus", str(corpus), "--steps", "40", "--run-dir", str(run), "--resume", *TINY]
    err = fails([*argv, "--hidden", "32"], capsys)
    assert "hidden 16 there, 32 now" in err and "--hidden 16" in err
    assert "Nothing was written" in err and "Delete" not in err
    assert snapshot(run) == before


def test_resume_on_a_corpus_with_another_vocabulary_of_the_same_size_is_refused(corpus, run, capsys):
    other = corpus.parent / "other.txt"
    other.write_text(corpus.read_text().replace("x", "y"))  # as many distinct characters, one of them another
    before = snapshot(run)
    err = fails(["demo", "--corpus", str(other), "--steps", "40", "--run-dir", str(run), "--resume", *TINY], capsys)
    assert "vocabulary" in err and "vocab.json" in err and "'y'" in err and "'x'" in err
    assert snapshot(run) == before


def test_resume_with_fewer_steps_than_its_checkpoint_is_refused(corpus, run, capsys):
    before = snapshot(run)
    err = fails(["demo", "--corpus", str(corpus), "--steps", "10", "--run-dir", str(run), "--resume", *TINY], capsys)
    assert "--steps 20" in err and "checkpoint" in err
    assert snapshot(run) == before


# --- 3. bad flags and damaged files: an error naming the flag or the file, nothing written --------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--steps", "0"),
        ("--layers", "0"),
        ("--batch", "0"),
        ("--window", "0"),
        ("--lr", "-0.01"),
        ("--lr", "nan"),
        ("--dropout", "1"),
        ("--recurrent-dropout", "-0.1"),
    ],
)
def test_demo_refuses_a_bad_flag(corpus, tmp_path, flag, value, capsys):
    run = tmp_path / "run"
    err = fails(["demo", "--corpus", str(corpus), "--run-dir", str(run), *TINY, flag, value], capsys)
    assert f"argument {flag}: expected a {'rate' if 'dropout' in flag else 'positive'}" in err
    assert not run.exists()


@pytest.mark.parametrize(
    "flag, value", [("--top-p", "0"), ("--top-p", "1.5"), ("--temperature", "nan"), ("--temperature", "-1")]
)
def test_generate_refuses_a_bad_flag(tmp_path, flag, value, capsys):
    err = fails(["generate", "--checkpoint", str(tmp_path), flag, value], capsys)
    assert f"argument {flag}: expected" in err


def test_demo_refuses_a_window_longer_than_the_corpus(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    err = fails(["demo", "--corpus", str(corpus), "--run-dir", str(run), *TINY, "--window", "5000"], capsys)
    assert "--window" in err and "3,600" in err  # the training characters of 4,000
    assert not run.exists()


def test_demo_refuses_a_run_dir_that_is_a_file(corpus, tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    err = fails(["demo", "--corpus", str(corpus), "--run-dir", str(path), *TINY], capsys)
    assert "--run-dir" in err and "is a file" in err
    assert path.read_text() == "keep me"


def test_demo_refuses_more_devices_than_there_are(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    devices = str(len(jax.devices()) + 1)
    err = fails(["demo", "--corpus", str(corpus), "--run-dir", str(run), *TINY, "--devices", devices], capsys)
    assert "--devices" in err and f"{devices} asked for" in err
    assert not run.exists()


@pytest.mark.parametrize("command", ["generate", "resume"])
def test_a_truncated_config_json_is_named(corpus, run, command, capsys):
    config = run / "config.json"
    config.write_bytes(config.read_bytes()[:50])
    before = snapshot(run)
    if command == "generate":
        argv = ["generate", "--checkpoint", str(run)]
    else:
        argv = ["demo", "--corpus", str(corpus), "--steps", "40", "--run-dir", str(run), "--resume", *TINY]
    err = fails(argv, capsys)
    assert str(config) in err and "JSONDecodeError" in err
    assert snapshot(run) == before


def test_generate_from_a_missing_run_dir_names_it(tmp_path, capsys):
    err = fails(["generate", "--checkpoint", str(tmp_path / "nothing")], capsys)
    assert "--checkpoint" in err and "nothing does not exist" in err


# --- 4. a torn or blank last line of metrics.jsonl (a run killed while writing it) -----------------


@pytest.mark.parametrize(
    "last_line",
    ['{"step": 25, "loss": 1.2', pytest.param("\n", marks=pytest.mark.slow)],  # each trains: 3-7 s here
    ids=["torn", "blank"],
)
def test_resume_drops_a_torn_last_metrics_line_with_a_warning(corpus, run, last_line, capsys):
    with (run / "metrics.jsonl").open("a") as metrics:
        metrics.write(last_line)
    with pytest.warns(Warning, match="metrics"):
        cli.main(["demo", "--corpus", str(corpus), "--steps", "30", "--run-dir", str(run), "--resume", *TINY])
    assert "run saved in" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [20, 30]
    assert json.loads((run / "config.json").read_text())["steps"] == 30  # the config records the resumed run


# --- the other commands ------------------------------------------------------------------------


@pytest.mark.slow
def test_adding_demo_runs(capsys):
    cli.main(["adding", "--hidden", "8", "--steps-per-seq", "10", "--batch", "8", "--train-steps", "20"])
    assert "test mse" in capsys.readouterr().out


@pytest.mark.slow
def test_default_demo_beats_kneser_ney_order_7():
    """The bar for the main job: at the default settings (4-7 minutes here) the LSTM's
    validation bits/char is below the Kneser-Ney baseline's (measured: 1.654 vs 1.687)."""
    from rnnjax.apps import lm

    config = lm.LMConfig()
    result = lm.train_char_lm(config, progress=False, log=lambda *args: None, devices=1)
    assert result["lm_valid_bpc"] < result["kn_valid_bpc"][config.kn_order] - 0.01
