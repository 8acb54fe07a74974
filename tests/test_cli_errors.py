"""The error contract of every entry point, as one table of bad inputs.

Each row runs an entry point's `main(argv)` in-process (the same code `python -m` runs, minus the
interpreter start) and checks the exit code, that stderr is exactly one `error: ...` line naming the
offending value or file, and that no output folder was left behind. A few rows run as real
subprocesses, one per entry point. To add a row: a `Row` in ROWS (placeholders `{d}` = the files
built below, `{o}` = an output path that must not exist afterwards).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import clsp.convert.__main__
import clsp.eval
import clsp.export
import clsp.shards
import clsp.train
from clsp.errors import ArgumentParser, DataFailure, UserError, entry_point

ENTRY = {"train": clsp.train.main, "eval": clsp.eval.main, "shards": clsp.shards.main, "export": clsp.export.main,
         "convert": clsp.convert.__main__.main}
# The tiny recipe most train rows start from; nothing is written under {o}.
FAST = ["recipe=fusionaudio", "model=tiny_whisper", "model.audio.pretrained=null", "trainer=cpu", "data.train={d}/good", "data.num_workers=0",
        "run.output_dir={o}"]


@dataclass
class Row:
    id: str
    entry: str
    argv: list[str]
    code: int
    says: tuple[str, ...]  # substrings of the one stderr line
    needs_no_gpu: bool = False  # the bad input is "asks for a GPU": only bad where there is none


ROWS = [
    # clsp.train: arguments, overrides, value types and ranges, files, hub ids
    Row("train-lr-not-a-number", "train", [*FAST, "optim.lr=abc"], 2, ("optim.lr='abc'", "number")),
    Row("train-devices-0", "train", [*FAST, "trainer.devices=0"], 2, ("trainer.devices=0", ">= 1")),
    Row("train-batch-size-float", "train", [*FAST, "data.batch_size=2.5"], 2, ("data.batch_size=2.5",)),
    Row("train-ema-out-of-range", "train", [*FAST, "trainer.ema_decay=1.5"], 2, ("trainer.ema_decay=1.5",)),
    Row("train-precision", "train", [*FAST, "trainer.precision=bf17"], 2, ("trainer.precision='bf17'", "bf16-mixed")),
    Row("train-unknown-key", "train", [*FAST, "optim.not_a_key=1"], 2, ("not_a_key",)),
    Row("train-renamed-key", "train", [*FAST, "optim.name=adam"], 2, ("optim.name was renamed to optim.optimizer._target_",)),
    Row("train-added-misspelt-key", "train", [*FAST, "+trainer.max_step=5"], 2,
        ("unknown config key 'trainer.max_step'", "did you mean trainer.max_steps")),
    Row("train-unknown-recipe", "train", ["recipe=nope", "run.output_dir={o}"], 2, ("'nope'", "demo")),
    Row("train-not-key-value", "train", ["recipe=demo", "lr"], 2, ("'lr'", "key=value")),
    Row("train-missing-shards", "train", [*FAST[:-3], "data.train={d}/none-{{0..3}}.tar", "run.output_dir={o}"], 2,
        ("data.train", "none-0.tar", "check the path given as data.train")),
    Row("train-text-hub-id", "train", [*FAST, "model.text.pretrained=no-such-org/no-such-model"], 2,
        ("model.text.pretrained='no-such-org/no-such-model'",)),
    Row("train-audio-hub-id", "train", [*FAST, "model.audio.pretrained=no-such-org/whisper-x"], 2,
        ("model.audio.pretrained='no-such-org/whisper-x'",)),
    Row("train-audio-folder", "train", [*FAST, "model.audio.pretrained={d}"], 2, ("model.audio.pretrained=", "folder")),
    Row("train-misspelt-key", "train", [*FAST, "model.audio.pretrianed=x"], 2,
        ("model.audio.pretrianed", "did you mean model.audio.pretrained")),
    Row("train-unknown-choice", "train", [*FAST, "model=nope"], 2, ("model/nope", "tiny_whisper")),
    Row("train-unparsable", "train", [*FAST, "optim.optimizer.betas=[0.9,"], 2, ("[0.9,",)),
    Row("train-gpu-without-gpu", "train", [*FAST, "trainer.accelerator=gpu"], 2, ("trainer.accelerator=gpu",),
        needs_no_gpu=True),
    Row("train-added-misspelt-key", "train", [*FAST, "+trainer.max_step=5"], 2,
        ("'trainer.max_step'", "did you mean trainer.max_steps")),
    Row("train-renamed-key", "train", [*FAST, "optim.name=adam"], 2, ("optim.name was renamed to optim.optimizer._target_",)),
    Row("train-renamed-pattern", "train", [*FAST, "logger.wandb_entity=me"], 2,
        ("logger.wandb_entity was renamed to logger.wandb.entity",)),
    Row("train-dangling-interpolation", "train", ["recipe=demo", "data.demo=null", "data.train={d}/good",
                                                  "run.output_dir={o}"], 2,
        ("data.val, data.test refer to ${{data.demo.root}}", "give data.val=... data.test=...")),
    Row("train-init-from-missing", "train", [*FAST, "run.init_from={d}/no_model"], 2, ("run.init_from=", "no_model")),
    Row("train-init-from-garbage", "train", [*FAST, "run.init_from={d}/garbage.ckpt"], 2,
        ("run.init_from", "garbage.ckpt", "not a checkpoint")),
    Row("train-resume-nothing", "train", [*FAST, "resume=latest"], 2, ("resume=latest",)),
    # clsp.export: missing, foreign and garbage checkpoints
    Row("export-garbage", "export", ["{d}/garbage.ckpt", "{o}"], 2, ("garbage.ckpt", "not a checkpoint")),
    Row("export-text-file", "export", ["{d}/table.csv", "{o}"], 2, ("table.csv", "not a checkpoint")),
    Row("export-foreign", "export", ["{d}/foreign.ckpt", "{o}"], 2, ("foreign.ckpt", "not a clsp training checkpoint")),
    Row("export-missing", "export", ["{d}/missing.ckpt", "{o}"], 2, ("missing.ckpt",)),
    Row("export-no-out", "export", ["{d}/garbage.ckpt"], 2, ("out",)),
    # clsp.shards: tables, files, flags
    Row("shards-no-audio-column", "shards", ["table", "{d}/no_audio.csv", "--out", "{o}"], 2,
        ("no_audio.csv", "no audio column", "--audio-column")),
    Row("shards-missing-table", "shards", ["table", "{d}/missing.csv", "--out", "{o}"], 2, ("missing.csv",)),
    Row("shards-missing-json", "shards", ["fusionaudio", "--json", "{d}/fa.json", "--audio-dir", "{d}", "--out", "{o}"],
        2, ("fa.json",)),
    Row("shards-missing-shards", "shards", ["laion", "--shards", "{d}/none-{{0..1}}.tar", "--out", "{o}"], 2,
        ("none-0.tar",)),
    Row("shards-per-shard-0", "shards", ["table", "{d}/table.csv", "--samples-per-shard", "0", "--out", "{o}"], 2,
        ("--samples-per-shard 0",)),
    Row("shards-bad-int", "shards", ["table", "{d}/table.csv", "--workers", "two", "--out", "{o}"], 2,
        ("--workers", "'two'")),
    Row("shards-unknown-flag", "shards", ["table", "{d}/table.csv", "--bogus", "--out", "{o}"], 2, ("--bogus",)),
    Row("shards-unknown-source", "shards", ["audioset", "--out", "{o}"], 2, ("'audioset'",)),
    Row("shards-out-has-shards", "shards", ["table", "{d}/table.csv", "--out", "{d}/good"], 2,
        ("already has", "--resume", "--overwrite")),
    # clsp.eval: models, tables, flags
    Row("eval-missing-model", "eval", ["retrieval", "--model", "{d}/no_model", "--data", "{d}/table.csv", "--out", "{o}"],
        2, ("no_model",)),
    Row("eval-garbage-ckpt", "eval", ["retrieval", "--model", "{d}/garbage.ckpt", "--data", "{d}/table.csv", "--out",
                                      "{o}"], 2, ("garbage.ckpt", "not a checkpoint")),
    Row("eval-no-caption-column", "eval", ["retrieval", "--model", "{d}/model", "--data", "{d}/no_caption.csv",
                                           "--out", "{o}"], 2, ("no_caption.csv", "caption")),
    Row("eval-missing-data", "eval", ["retrieval", "--model", "{d}/model", "--data", "{d}/missing.csv", "--out", "{o}"],
        2, ("missing.csv",)),
    Row("eval-no-data-arg", "eval", ["retrieval", "--model", "{d}/model"], 2, ("--data",)),
    Row("eval-batch-size-0", "eval", ["retrieval", "--model", "{d}/model", "--data", "{d}/table.csv", "--batch-size",
                                      "0", "--out", "{o}"], 2, ("--batch-size 0",)),
    Row("eval-cuda-without-gpu", "eval", ["retrieval", "--model", "{d}/model", "--data", "{d}/table.csv", "--device",
                                          "cuda", "--out", "{o}"], 2, ("--device cuda",), needs_no_gpu=True),
    Row("eval-unknown-task", "eval", ["ranking", "--model", "{d}/model"], 2, ("'ranking'",)),
    # clsp.convert: released checkpoints
    Row("convert-garbage", "convert", ["laion", "{d}/garbage.ckpt", "{o}"], 2, ("garbage.ckpt",)),
    Row("convert-text-file", "convert", ["wavcaps", "{d}/table.csv", "{o}"], 2, ("table.csv",)),
    Row("convert-foreign", "convert", ["htsat", "{d}/foreign.ckpt", "{o}"], 2, ("foreign.ckpt",)),
    Row("convert-missing", "convert", ["laion", "{d}/missing.pt", "{o}"], 2, ("missing.pt",)),
    Row("convert-unknown-source", "convert", ["openclip", "{d}/garbage.ckpt", "{o}"], 2, ("'openclip'",)),
    Row("convert-bad-amodel", "convert", ["laion", "{d}/garbage.ckpt", "{o}", "--amodel", "HTSAT-huge"], 2,
        ("HTSAT-huge",)),
]

# Every sample kind the reader skips and counts: a shard of 100 such samples and 10 good ones
# passes the reader's default limit (10 %), so the run stops with exit 1 and one line naming the
# shard and the reason.
SAMPLE_FAULTS = {
    "bad_json": lambda good: [("x.flac", good), ("x.json", b"{not json")],
    "decode_error": lambda good: [("x.flac", os.urandom(600)), ("x.json", _js({"text": "random bytes"}))],
    "empty_audio": lambda good: [("x.wav", _wav(np.zeros(0, np.float32))), ("x.json", _js({"text": "silence"}))],
    "nan_audio": lambda good: [("x.wav", _wav(np.full(100, np.nan, np.float32), "FLOAT")), ("x.json", _js({"text": "n"}))],
    "empty_caption": lambda good: [("x.flac", good), ("x.json", _js({"captions": {"short": [""], "long": [" "]}}))],
    "no_json": lambda good: [("x.flac", good)],
}
# Whole-shard faults (a cut tar, a .tar that is not a tar) cost one count each: beside a good shard
# they are skipped, counted, and the run finishes (exit 0).


def _js(obj) -> bytes:
    return json.dumps(obj).encode()


def _wav(audio: np.ndarray, subtype: str = "PCM_16", rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _tone(i: int) -> bytes:
    t = np.arange(1600, dtype=np.float32) / 16000
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * (200 + 20 * i) * t), 16000, format="FLAC")
    return buf.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _good_members(n: int, prefix: str = "g") -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        out += [(f"{prefix}{i:03d}.flac", _tone(i)), (f"{prefix}{i:03d}.json", _js({"captions": {"short": [f"tone {i}"]}}))]
    return out


@pytest.fixture(scope="module")
def d(tmp_path_factory) -> Path:
    """Every input file the rows refer to, built once."""
    from clsp import CLSPConfig, CLSPModel
    from clsp.atomic import write_json_atomic
    from clsp.data.writer import SIZES_FILE

    root = tmp_path_factory.mktemp("cli_inputs")
    (root / "good").mkdir()
    _tar(root / "good" / "shard-000000.tar", _good_members(8))
    write_json_atomic(root / "good" / SIZES_FILE, {"shard-000000.tar": 8})
    (root / "garbage.ckpt").write_bytes(np.random.default_rng(0).bytes(4096))
    torch.save({"state_dict": {"w": torch.zeros(2)}}, root / "foreign.ckpt")
    (root / "clips").mkdir()
    for i in range(4):
        (root / "clips" / f"{i}.flac").write_bytes(_tone(i))
    (root / "table.csv").write_text("audio,caption\n" + "".join(f"clips/{i}.flac,tone {i}\n" for i in range(4)))
    (root / "no_audio.csv").write_text("caption,other\nhello,x\n")
    (root / "no_caption.csv").write_text("audio,words\nclips/0.flac,x\n")
    CLSPModel(CLSPConfig.tiny()).save_pretrained(root / "model")
    good = _tone(0)
    for reason, make in SAMPLE_FAULTS.items():
        members = []
        for i in range(100):
            members += [(f"{reason}{i:03d}{name[1:]}", data) for name, data in make(good)]
        _tar(root / f"{reason}.tar", members + _good_members(10))
    members = _good_members(4, "c")
    cut = _tar(root / "cut.tar", members)
    blocks = sum(512 + -(-len(data) // 512) * 512 for _, data in members[:2])  # the first sample, whole
    cut.write_bytes(cut.read_bytes()[: blocks + 512 + len(members[2][1]) // 2])  # inside the second's audio
    (root / "not_a_tar.tar").write_bytes(b"this is a text file, not a tar archive\n" * 20)
    return root


def _fill(argv: list[str], d: Path, out: Path) -> list[str]:
    return [a.format(d=d, o=out) for a in argv]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_one_line(row: Row, d: Path, tmp_path, capsys):
    if row.needs_no_gpu and torch.cuda.is_available():
        pytest.skip("a GPU is visible: asking for one is not an error here")
    out = tmp_path / "out"
    before = sorted(p.name for p in d.rglob("*"))
    code = ENTRY[row.entry](_fill(row.argv, d, out))
    line = _one_line(capsys.readouterr().err)
    assert code == row.code, line
    for text in row.says:
        assert text.format(d=d) in line, line
    if row.code == 2:
        assert line.count(" — ") == 1, f"not '<what> — <what to do>': {line}"
    assert not out.exists(), "an output folder was left behind"
    assert sorted(p.name for p in d.rglob("*")) == before, "an input folder was written to"


@pytest.mark.parametrize("reason", list(SAMPLE_FAULTS))
def test_too_many_bad_samples_exit_1(reason: str, d: Path, tmp_path, capsys):
    out = tmp_path / "out"
    code = clsp.eval.main(["retrieval", "--model", str(d / "model"), "--data", str(d / f"{reason}.tar"),
                           "--out", str(out)])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert f"{reason}.tar" in line and f"top reason: {reason}" in line, line
    assert not out.exists(), "a report or cache was left behind"


@pytest.mark.parametrize("shard, written", [("cut.tar", 1), ("not_a_tar.tar", 0)])
def test_bad_shard_is_skipped_and_counted(shard: str, written: int, d: Path, tmp_path, capsys):
    out = tmp_path / "out"
    spec = f"{d}/good/shard-000000.tar::{d}/{shard}"
    assert clsp.shards.main(["laion", "--shards", spec, "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"] == {"corrupt_tar": 1}
    assert report["written"] == 8 + written  # the cut shard's first sample is kept


def test_checked_values_are_normalised():
    from clsp.training.compose import compose_config

    cfg = compose_config(["recipe=demo", "optim.lr='2e-4'", "data.batch_size=8.0", "trainer.val_check_interval=50",
                          "trainer.devices=auto"])
    assert cfg.optim.lr == 2e-4 and type(cfg.data.batch_size) is int and cfg.data.batch_size == 8
    assert type(cfg.trainer.val_check_interval) is int  # Lightning: an int counts batches, a float is a fraction


def test_debug_shows_the_traceback(d: Path, tmp_path, capsys, monkeypatch):
    argv = ["table", str(d / "no_audio.csv"), "--out", str(tmp_path / "o")]
    assert clsp.shards.main([*argv, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    monkeypatch.setenv("CLSP_DEBUG", "1")
    assert clsp.train.main(["recipe=demo", "optim.lr=abc"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback():
    @entry_point
    def main(argv):
        if argv == ["user"]:
            raise UserError("bad --x", "give a number")
        if argv == ["data"]:
            raise DataFailure("shard s.tar: too many bad samples")
        raise KeyError("a bug")

    assert main(["user"]) == 2 and main(["data"]) == 1
    with pytest.raises(KeyError):
        main([])


def test_worker_wrapped_message_is_one_line(capsys):
    """A DataLoader worker re-raises our exception with its traceback in the message."""

    @entry_point
    def main(argv):
        raise DataFailure("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                          "last):\n  File \"x.py\", line 1\nclsp.data.reader.DataError: data failure rate 50%\n")

    assert main([]) == 1
    assert capsys.readouterr().err == "error: data failure rate 50%\n"


def test_parser_errors_are_user_errors():
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--n", type=int)
    with pytest.raises(UserError, match="tool: argument --n: invalid int value: 'x'"):
        parser.parse_args(["--n", "x"])


def test_library_message_keeps_its_instruction():
    err = UserError.from_exception(ValueError("t.csv: no audio column among ['a']; pass --audio-column"), "see --help")
    assert (err.what, err.todo) == ("t.csv: no audio column among ['a']", "pass --audio-column")
    assert UserError.from_exception(FileNotFoundError("x.json\nnot found"), "fix it").todo == "fix it"


SUBPROCESS_ROWS = [
    ("train", ["recipe=demo", "optim.lr=abc"], "optim.lr='abc'"),
    ("export", ["{d}/garbage.ckpt", "{o}"], "not a checkpoint"),
    ("shards", ["table", "{d}/no_audio.csv", "--out", "{o}"], "no audio column"),
    ("eval", ["retrieval", "--model", "{d}/no_model", "--data", "{d}/table.csv", "--out", "{o}"], "no_model"),
    ("convert", ["laion", "{d}/garbage.ckpt", "{o}"], "garbage.ckpt"),
]


@pytest.mark.slow  # one real interpreter per entry point
@pytest.mark.parametrize("entry, argv, says", SUBPROCESS_ROWS, ids=[r[0] for r in SUBPROCESS_ROWS])
def test_python_m_entry_points(entry, argv, says, d: Path, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "CLSP_DEBUG": ""}
    proc = subprocess.run([sys.executable, "-m", f"clsp.{entry}", *_fill(argv, d, out)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert says in _one_line(proc.stderr)
    assert not out.exists()
