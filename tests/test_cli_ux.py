"""What a new user tripped over on the command line (issue 31, point 7): each fixed, each checked here."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jaxvis.cli import main

CLI_MODULES = ("info", "visualize", "methods", "attack", "units", "gan")


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Loading any weights fails the test: the requests using it must be refused before that."""
    def refuse(*_a, **_k):
        raise AssertionError("the model was loaded before the request was checked")

    for name in ("common", *CLI_MODULES):
        module = importlib.import_module(f"jaxvis.cli.{name}")
        if hasattr(module, "load_model"):
            monkeypatch.setattr(module, "load_model", refuse)


# --- the attack's summary describes the saved PNGs, seen as classify sees them ------------------------------


def test_the_attacks_class_for_a_saved_png_is_what_classify_says_of_it(capsys, tmp_path):
    out = tmp_path / "attack"
    code, stdout, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", "--method", "fgsm", "--eps", "2/255",
                            "--out", str(out))
    assert code == 0, err
    said = re.search(r"-> (.+) \((\d\.\d\d)\) in (\S+\.png)", stdout)
    assert said, stdout
    name, probability, png = said.group(1), said.group(2), out / said.group(3)
    code, classified, err = run(capsys, "classify", "mobilenet_v2", str(png), "--top", "1")
    assert code == 0, err
    percent, _, top = classified.splitlines()[1].split(None, 2)
    assert top == name and f"{float(percent.rstrip('%')) / 100:.2f}" == probability
    entry = json.loads((out / "run.json").read_text())["images"][0]
    assert entry["adversarial"] == name and entry["png"] == png.name
    assert entry["png_still_fools"] == (name != entry["clean"])


def test_a_saved_png_that_no_longer_fools_is_judged_so_and_said_plainly(mobilenet, tmp_path):
    """The PNG judged is the file on disk: an 'adversarial' image that is the clean photo itself fools nothing."""
    from jaxvis.cli.attack import judge_saved_pngs, summary_line
    from jaxvis.data.io import read_photo

    photo = read_photo("sample:chelsea", 224, 32)
    item = {"image": "sample:chelsea", "clean": "Egyptian cat", "clean_p": 0.79, "png": "image_00.png",
            "success": True, "norm": 0.0078, "steps": 10}
    judge_saved_pngs(mobilenet, tmp_path, [item], photo[None], None)
    assert (tmp_path / "image_00.png").exists()
    assert item["adversarial"] == "Egyptian cat" and item["png_still_fools"] is False
    assert "the saved PNG no longer fools mobilenet_v2" in summary_line(item, "linf", "mobilenet_v2")
    judge_saved_pngs(mobilenet, tmp_path, [item], photo[None], [285])  # targeted at Egyptian cat: it holds
    assert item["png_still_fools"] is True
    assert "no longer fools" not in summary_line(item, "linf", "mobilenet_v2")


def test_classify_and_attack_show_an_image_the_same_way():
    """Both use the whole central square: an image already at the input size is shown exactly as it is."""
    from jaxvis.cli.common import classify_view
    from jaxvis.data.io import read_photo

    image = np.random.default_rng(0).random((224, 224, 3), dtype=np.float32)
    np.testing.assert_array_equal(classify_view(image, 224), image)
    wide = np.random.default_rng(1).random((100, 160, 3), dtype=np.float32)
    np.testing.assert_array_equal(classify_view(wide, 100), wide[:, 30:130])


# --- Ctrl-C, then the same command again ---------------------------------------------------------------------


VISUALIZE = ("visualize", "mobilenet_v2", "features.10", "--channels", "2", "--size", "32", "--steps", "4",
             "--checkpoint-every", "2")


def interrupt_after_first_checkpoint(monkeypatch):
    from jaxvis.core.checkpoints import Checkpoints

    real = Checkpoints.save

    def save_then_interrupt(self, step, *args):
        real(self, step, *args)
        monkeypatch.setattr(Checkpoints, "save", real)
        raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoints, "save", save_then_interrupt)


def test_the_same_command_continues_an_interrupted_run_where_it_stopped(capsys, tmp_path, monkeypatch):
    from jaxvis.cli.common import run_directory

    out, whole = tmp_path / "vis", tmp_path / "uninterrupted"
    interrupt_after_first_checkpoint(monkeypatch)
    code, _, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 130 and "the same command again continues" in err
    code, _, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 0, err
    assert "resuming at step 2 of 4" in err and "step_2" in err  # from the checkpoint, not from step 0
    assert not run_directory(out).exists()  # complete: nothing left to resume
    code, _, err = run(capsys, *VISUALIZE, "--out", str(whole))
    assert code == 0 and "resuming" not in err
    from jaxvis.data.io import read_image

    np.testing.assert_allclose(read_image(out / "unit_0002.png"), read_image(whole / "unit_0002.png"), atol=2 / 255)


def test_a_changed_command_is_refused_before_loading_and_fresh_starts_over(capsys, tmp_path, monkeypatch):
    import jaxvis.cli.visualize as command

    out = tmp_path / "vis"
    interrupt_after_first_checkpoint(monkeypatch)
    assert run(capsys, *VISUALIZE, "--out", str(out))[0] == 130
    real_load = command.load_model
    monkeypatch.setattr(command, "load_model", lambda *_: pytest.fail("loaded before refusing"))
    code, _, err = run(capsys, *VISUALIZE, "--lr", "0.1", "--out", str(out))
    assert code == 2 and "lr: 0.05 -> 0.1" in err and "--fresh" in err
    monkeypatch.setattr(command, "load_model", real_load)
    code, _, err = run(capsys, *VISUALIZE, "--lr", "0.1", "--fresh", "--out", str(out))
    assert code == 0 and "resuming" not in err, err


def test_a_run_held_by_a_live_process_is_refused_before_loading(capsys, tmp_path, no_model_loading):
    import socket

    from jaxvis.cli.common import run_directory

    out = tmp_path / "vis"
    state = run_directory(out)
    state.mkdir(parents=True)
    (state / "lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    code, _, err = run(capsys, *VISUALIZE, "--out", str(out))
    assert code == 2 and f"pid {os.getppid()}" in err and not out.exists()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_lock_excludes_a_second_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, capsys):
    import socket

    from jaxvis.core.run_state import RunLockedError, lock_holder, locked

    folder = tmp_path / "state"
    with locked(folder):
        assert lock_holder(folder) == {"pid": os.getpid(), "host": socket.gethostname()}
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            with locked(folder):
                pass
    assert not folder.exists()  # only the lock was there
    folder.mkdir()
    gone = dead_pid()
    (folder / "lock").write_text(json.dumps({"pid": gone, "host": socket.gethostname()}))
    with locked(folder):
        assert lock_holder(folder)["pid"] == os.getpid()
    assert f"taking over the lock of process {gone}" in capsys.readouterr().err


def test_an_empty_lock_is_someone_taking_it_now_or_one_a_kill_left_long_ago(tmp_path, capsys):
    """A kill between the lock's creation and its one write leaves it empty: refused while that can still be a live
    process at work (under a minute), taken over with a note after.  Mutation that fails it: an empty lock read as
    a live holder on another host (never taken over)."""
    from jaxvis.core.run_state import STALE_EMPTY_LOCK_S, RunLockedError, lock_holder, locked

    folder = tmp_path / "state"
    folder.mkdir()
    (folder / "lock").write_bytes(b"")
    with pytest.raises(RunLockedError, match="taking the lock .* at this moment"):
        with locked(folder):
            pass
    long_ago = time.time() - STALE_EMPTY_LOCK_S - 1
    os.utime(folder / "lock", (long_ago, long_ago))
    with locked(folder):
        assert lock_holder(folder)["pid"] == os.getpid()
    assert "taking over the lock of a process that was stopped while taking it" in capsys.readouterr().err


def test_a_second_command_on_an_output_folder_in_use_stops_at_once_naming_the_holder(capsys, tmp_path,
                                                                                      tiny_cnn_by_name):
    """Two processes on one --out: while one holds the folder (as every writing command does from its request
    checks to its last write), `jaxvis attack` on it stops before loading anything, naming the holder's pid and
    host.  Once the holder is killed (SIGKILL: its lock stays behind), the next command takes the lock over with a
    note, runs, and leaves no lock.  Mutation that fails it: a command not taking the output lock (the attack runs)."""
    import socket
    import time

    out = tmp_path / "shared" / "out"
    code = f"""
        import time
        from pathlib import Path
        from jaxvis.cli.common import holding_output
        with holding_output(Path({str(out)!r})):
            print("holding", flush=True)
            time.sleep(600)
    """
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        start = time.perf_counter()
        second = subprocess.run([sys.executable, "-m", "jaxvis.cli", "attack", "mobilenet_v2", "sample:chelsea",
                                 "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"(pid {holder.pid} on {socket.gethostname()}) is writing to {out}" in second.stderr
        assert "converting" not in second.stderr and "pgd:" not in second.stderr  # stopped before the model
        print(f"refused in {time.perf_counter() - start:.1f} s")
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".jaxvis-lock").exists()  # left behind by the killed holder
    code, _, err = run(capsys, "visualize", tiny_cnn_by_name, "features.8", "--channels", "2", "--size", "32",
                       "--steps", "2", "--out", str(out))
    assert code == 0 and f"taking over the lock of process {holder.pid}" in err, err
    assert (out / "run.json").exists() and not (out / ".jaxvis-lock").exists()


def test_a_command_that_fails_once_it_holds_its_output_leaves_no_folder_it_made(capsys, tmp_path):
    """A weight file that is not one, found out while the model loads (after the output lock is taken): neither
    the output folder nor the parents the lock made stay behind (`locked` removing only the lock fails it)."""
    out, weights = tmp_path / "new" / "out", tmp_path / "weights.pth"
    weights.write_bytes(b"not a checkpoint" * 64)
    code, _, err = run(capsys, "attack", "mobilenet_v2", "sample:chelsea", "--weights", str(weights), "--out", str(out))
    assert code == 2 and "weights.pth" in err and not (tmp_path / "new").exists(), err


def test_cache_lists_what_jaxvis_keeps_with_sizes_and_clears_one_kind(capsys, tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("JAXVIS_CACHE", str(tmp_path))
    monkeypatch.delenv("JAXVIS_COMPILATION_CACHE", raising=False)
    files = {"runs/a1/group_1/x": 1000, "runs/b2/x": 24, "xla/cpu-1/p": 3000, "mobilenet_v2/abc/w": 2048,
             "gan/dcgan_faces-1/s": 10}
    for name, count in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x" * count)
    (tmp_path / "runs/b2/lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    size_of_b2 = 24 + (tmp_path / "runs/b2/lock").stat().st_size
    code, out, _ = run(capsys, "cache")
    rows = {line.split()[0]: line.split()[1:4] for line in out.splitlines()[1:]}
    assert code == 0 and rows["runs"] == ["2", f"{(1000 + size_of_b2) / 1024:.1f}", "KB"]
    assert rows["programs"] == ["1", f"{3000 / 1024:.1f}", "KB"] and rows["models"] == ["1", "2.0", "KB"]
    assert rows["gan"] == ["1", "10", "B"]
    code, out, _ = run(capsys, "cache", "clear", "runs")
    assert code == 0 and "kept 1 that a running jaxvis holds" in out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["b2"]  # the held run stays
    assert (tmp_path / "xla/cpu-1/p").exists() and (tmp_path / "mobilenet_v2/abc/w").exists()
    code, _, err = run(capsys, "cache", "clear", "modles")
    assert code == 2 and "unknown kind 'modles'" in err


# --- invert: Ctrl-C answered at once, where the stages are, the classes that missed ---------------------------


def test_a_wait_for_the_device_answers_ctrl_c_at_once(tmp_path):
    """A chunk that computes for seconds: Ctrl-C sent 1 s in ends the process well before the chunk would."""
    script = tmp_path / "chunk.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the test runner's SIGINT is ignored
        import jax, jax.numpy as jnp
        from jaxvis.engine.optimize import computed

        @jax.jit
        def slow(x, count):
            return jax.lax.fori_loop(0, count, lambda i, y: jnp.tanh(y @ y.T + 1.0), x)

        x = jnp.ones((500, 500)); slow(x, 1).block_until_ready()
        started = time.perf_counter(); slow(x, 20).block_until_ready()
        count = int(20 * 6 / (time.perf_counter() - started))  # about 6 s on any machine
        started = time.perf_counter(); slow(x, count).block_until_ready()
        print(time.perf_counter() - started, flush=True)
        print("go", flush=True)
        try:
            computed(slow(x, count))
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    whole = float(process.stdout.readline())
    assert whole > 3, f"the chunk took {whole:.1f} s: too short to tell"
    assert process.stdout.readline().strip() == "go"
    import time

    sent = time.perf_counter() + 1
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().strip() == "interrupted"
    assert time.perf_counter() - sent < whole / 2
    process.kill()


def test_an_interrupted_method_says_where_its_finished_stages_are(tmp_path, capsys):
    from jaxvis.cli.methods import stages_said

    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "00-goldfish_stage_56px.png").write_bytes(b"")
    with pytest.raises(KeyboardInterrupt), stages_said(tmp_path):
        raise KeyboardInterrupt
    assert f"1 images of the finished stages are in {tmp_path / 'stages'}" in capsys.readouterr().err


def test_an_interrupted_inversion_continues_with_the_same_command(capsys, tmp_path, monkeypatch, tiny_cnn_by_name):
    """DeepInversion's two phases on the tiny CNN: Ctrl-C after the first, then the same command restores it
    (not rerun) and ends with the images of an uninterrupted run; a changed command is refused before loading."""
    from jaxvis.cli.common import run_directory
    import jaxvis.cli.methods as command
    from jaxvis.data.io import read_image

    args = ("invert", tiny_cnn_by_name, "--classes", "1,3", "--method", "deepinversion", "--size", "32", "--steps", "6")
    whole = tmp_path / "whole"
    assert run(capsys, *args, "--out", str(whole))[0] == 0
    out = tmp_path / "inv"
    real = command.stage_saver

    def interrupting(*a):
        save = real(*a)

        def saved_then_interrupted(stage, images):
            save(stage, images)
            raise KeyboardInterrupt

        return saved_then_interrupted

    monkeypatch.setattr(command, "stage_saver", interrupting)
    code, _, err = run(capsys, *args, "--out", str(out))
    assert code == 130 and "the same command again continues" in err
    loader = command.load_model
    monkeypatch.setattr(command, "load_model", lambda *_: pytest.fail("loaded before refusing"))
    code, _, err = run(capsys, *args, "--seed", "1", "--out", str(out))
    assert code == 2 and "seed: 0 -> 1" in err and "--fresh" in err
    monkeypatch.setattr(command, "load_model", loader)
    monkeypatch.setattr(command, "stage_saver", real)
    code, _, err = run(capsys, *args, "--out", str(out))
    assert code == 0, err
    assert "continuing the interrupted run" in err and err.count("resuming from") == 1  # phase 1 restored
    assert not run_directory(out).exists()  # complete: nothing left to continue
    names = sorted(p.name for p in whole.glob("class_*.png"))
    assert names == sorted(p.name for p in out.glob("class_*.png")) and len(names) == 2
    for name in names:  # the same images, up to float32 rounding (one 8-bit level)
        difference = np.abs(read_image(str(out / name)) - read_image(str(whole / name)))
        assert difference.max() <= 1 / 255 + 1e-6


def test_classes_that_missed_their_target_are_named():
    from jaxvis.cli.methods import missed_targets

    classes = {"00-0001-goldfish": {"probability": 0.97, "top1": "goldfish"},
               "01-0207-golden_retriever": {"probability": 0.0014, "top1": "prayer rug"},
               "02-0980-volcano": {"probability": 0.3, "top1": "volcano"}}
    lines = missed_targets(classes, ["goldfish", "golden retriever", "volcano"])
    assert lines == ["01-0207-golden_retriever: missed its target: p(golden retriever) = 0.0014, the model's top-1 "
                     "is prayer rug"]


def test_each_stage_bar_is_labelled_with_its_stage(monkeypatch):
    import jaxvis.engine.stages as stages

    seen = []

    def record(model, objective, **options):
        seen.append(options["description"])
        raise StopIteration

    monkeypatch.setattr(stages, "optimize", record)
    builders = [lambda key, previous, label=label: stages.Stage(label, None, None, None, 1) for label in ("a", "b")]
    with pytest.raises(StopIteration):
        stages.run_stages(None, builders)
    assert seen == ["a (1 of 2)"]


def test_the_top_level_inversion_example_is_a_valid_quick_one_and_says_what_the_default_costs(capsys, tmp_path,
                                                                                             no_model_loading):
    _, out, _ = run(capsys, "--help")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "jaxvis invert" in line)
    assert "~1 min" in lines[at + 1] and "~30 min a class" in lines[at + 2]
    with pytest.raises(AssertionError, match="the model was loaded"):  # its request passes every check
        main([*lines[at].split()[1:], "--out", str(tmp_path / "out")])


# --- every command checks its whole request before loading or creating anything ------------------------------


@pytest.mark.parametrize("args,message", [
    (("style", "mobilenet_v2", "sample:chelsea", "sample:brick", "--size", "7"), "at least 32x32"),
    (("style", "mobilenet_v2", "sample:chelsea", "sample:brick", "--pyramid", "0"), "--pyramid must be at least 1"),
    (("attack", "mobilenet_v2", "sample:chelsea", "--eps", "300"), "eps must be in (0, 1]"),
    (("attack", "mobilenet_v2", "sample:chelsea", "--norm", "l2", "--eps", "1000"), "eps must be in (0, 388]"),
    (("attack", "mobilenet_v2", "sample:chelsea", "--size", "7"), "at least 32x32"),
    (("invert", "mobilenet_v2", "--classes", "1", "--size", "7"), "at least 32x32"),
    (("invert", "mobilenet_v2", "--classes", "1", "--size", "64"), "starts at 2·(64//8) = 16 px"),
    (("invert", "mobilenet_v2", "--classes", "1", "--steps", "0"), "--steps must be at least 1"),
    (("dream", "mobilenet_v2", "sample:chelsea", "--layer", "features.6", "--octaves", "0"), "--octaves must be"),
    (("dream", "mobilenet_v2", "sample:chelsea", "--layer", "features.6", "--size", "40"), "below the 32 px"),
    (("reconstruct", "mobilenet_v2", "sample:coffee", "--layer", "features.6", "--size", "7"), "at least 32x32"),
    (("reconstruct", "mobilenet_v2", "sample:coffee", "--layer", "features.6", "--steps", "0"), "--steps must"),
    (("visualize", "mobilenet_v2", "--steps", "0"), "--steps must be at least 1"),
])
def test_a_refused_request_loads_nothing_and_creates_no_folder(capsys, tmp_path, no_model_loading, args, message):
    out = tmp_path / "not-yet"
    code, _, err = run(capsys, *args, "--out", str(out))
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (("dissect", "mobilenet_v2", "features.7", "--quantile", "2"), "--quantile must lie strictly between 0 and 1"),
    (("ablate", "mobilenet_v2", "features.7", "--class", "1", "--top", "0"), "--top must be at least 1"),
    (("examples", "mobilenet_v2", "features.7", "--size", "7"), "at least 32x32"),
    (("atlas", "mobilenet_v2", "features.7", "--fv-size", "4"), "too small to visualize"),
])
def test_a_refused_unit_request_loads_nothing_and_creates_no_folder(capsys, tmp_path, no_model_loading, args,
                                                                    message):
    out = tmp_path / "not-yet"
    code, _, err = run(capsys, *args, "--data", str(tmp_path), "--out", str(out))
    assert code == 2 and message in err, err
    assert not out.exists()


def test_classify_checks_its_request_before_loading(capsys, no_model_loading):
    code, _, err = run(capsys, "classify", "mobilenet_v2", "sample:chelsea", "--top", "0")
    assert code == 2 and "--top must be at least 1" in err


# --- a reader that closes the pipe early ----------------------------------------------------------------------


def test_a_closed_pipe_ends_the_command_quietly():
    process = subprocess.Popen([sys.executable, "-m", "jaxvis.cli", "layers", "mobilenet_v2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the first line (`| head -0`)
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


# --- one argument order: the model first --------------------------------------------------------------------


def test_dream_style_and_reconstruct_take_the_model_first_and_note_the_old_order(capsys, tmp_path, no_model_loading):
    out = str(tmp_path / "o")
    code, _, err = run(capsys, "dream", "mobilenet_v2", "sample:chelsea", "--layer", "features.66", "--out", out)
    assert code == 2 and "nearest: features.6" in err and "deprecated" not in err
    code, _, err = run(capsys, "dream", "sample:chelsea", "--layer", "features.66", "--model", "mobilenet_v2",
                       "--out", out)
    assert code == 2 and "nearest: features.6" in err
    assert "deprecated" in err and "jaxvis dream mobilenet_v2 sample:chelsea" in err
    code, _, err = run(capsys, "style", "sample:chelsea", "sample:brick", "--size", "7", "--out", out)
    assert code == 2 and "deprecated" in err and "at least 32x32" in err
    code, _, err = run(capsys, "reconstruct", "sample:coffee", "sample:chelsea", "--layer", "feature.6", "--out", out)
    assert code == 2 and "deprecated" in err and "nearest: features.6" in err
    for command in ("dream", "style", "reconstruct"):
        _, usage, _ = run(capsys, command, "--help")
        examples = usage.split("examples:")[1]
        assert all(line.split()[2] in ("mobilenet_v2", "vgg19") for line in examples.strip().splitlines()), examples


# --- the command line's words -------------------------------------------------------------------------------


def test_errors_say_the_options_not_the_python_keywords(capsys, monkeypatch):
    monkeypatch.setenv("JAXVIS_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    code, _, err = run(capsys, "classify", "resnet50", "sample:chelsea")
    assert code == 2 and "no pretrained weights found" in err, err
    assert "--weights PATH" in err and "weights=" not in err


def test_a_mistyped_option_gets_its_commands_usage_and_the_nearest_option(capsys):
    code, _, err = run(capsys, "visualize", "mobilenet_v2", "--chanels", "3")
    assert code == 2 and "usage: jaxvis visualize" in err and "did you mean --channels?" in err
    code, _, err = run(capsys, "gan", "edit", "dcgan_faces", "--remove", "eye", "--sampels=8")
    assert code == 2 and "usage: jaxvis gan edit" in err and "did you mean --samples?" in err
