"""The AudioSet HTSAT converter, bad input, and the CLI."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convert_sources import htsat_checkpoint, laion_checkpoint, wavcaps_features

from clsp import CLSPConfig, CLSPModel
from clsp.convert.__main__ import main
from clsp.convert.checkpoint import load_checkpoint
from clsp.errors import UserError
from clsp.tiny import tiny_tokenizer


def test_htsat_tower_starts_a_model(tmp_path):

    audio = htsat_checkpoint(tmp_path / "HTSAT.ckpt")
    assert main(["htsat", str(tmp_path / "HTSAT.ckpt"), str(tmp_path / "tower")]) == 0
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"]["pretrained"] = str(tmp_path / "tower")
    model = CLSPModel(CLSPConfig.from_dict(cfg)).eval()
    # The tower brings the AudioSet HTSAT's frontend; the saved model rebuilds without the tower folder.
    assert (model.sample_rate, model.config.audio.hop_length) == (32000, 320)
    model.save_pretrained(tmp_path / "m")
    again = CLSPModel.from_pretrained(tmp_path / "m")
    assert again.config.audio.pretrained is None and again.sample_rate == 32000
    fe = wavcaps_features()  # the AudioSet HTSAT's frontend is WavCaps' (32 kHz, hop 320, zero-pad)
    wave = np.random.default_rng(0).normal(0, 0.1, 32000 * 5).astype(np.float32)
    with torch.no_grad():
        pooled, _, _ = again.audio(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        ref = audio(input_features=fe(wave, sampling_rate=32000, return_tensors="pt")["input_features"]).pooler_output
    torch.testing.assert_close(pooled, ref, atol=1e-4, rtol=1e-4)


def test_pretrained_audio_from_a_converted_clsp_folder(tmp_path):
    laion_checkpoint(tmp_path / "c.pt")
    tiny_tokenizer(tmp_path / "tok")
    assert main(["laion", str(tmp_path / "c.pt"), str(tmp_path / "laion"), "--tokenizer", str(tmp_path / "tok")]) == 0
    source = CLSPModel.from_pretrained(tmp_path / "laion")
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"].update(pretrained=str(tmp_path / "laion"), sample_rate=16000)
    model = CLSPModel(CLSPConfig.from_dict(cfg))
    assert model.sample_rate == 48000
    for (name, p), q in zip(model.audio.named_parameters(), source.audio.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0, msg=name)


def test_bad_input_is_one_line(tmp_path, capsys):
    laion_checkpoint(tmp_path / "c.pt")
    raw = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    cases = [
        (["laion", str(tmp_path / "cut.pt"), str(tmp_path / "o")], "cut.pt: not a readable torch checkpoint"),
        (["wavcaps", str(tmp_path / "c.pt"), str(tmp_path / "o")], "c.pt: no 'model' weights"),
        (["htsat", str(tmp_path / "c.pt"), str(tmp_path / "o")], "c.pt: no sed_model"),
        (["laion", str(tmp_path / "none.pt"), str(tmp_path / "o")], "none.pt: no such file"),
        (["laion", str(tmp_path / "c.pt"), str(tmp_path / "o"), "--tokenizer", str(tmp_path / "nothing")],
         "cannot load the roberta tokenizer"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, err
        assert "expected" in err or "pass" in err


def test_safe_loader_allows_numpy_scalars_only(tmp_path):
    # numpy scalars, as numpy 1 wrote them (numpy.core.multiarray.scalar), load.
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(1)}, "best": np.float64(0.5), "epoch": np.int64(3)}, buf,
               _use_new_zipfile_serialization=False)
    old = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "np1.pt").write_bytes(old)
    data = load_checkpoint(tmp_path / "np1.pt", "a test file")
    assert float(data["best"]) == 0.5 and int(data["epoch"]) == 3
    # Anything else is refused, not executed.
    torch.save({"state_dict": {}, "cfg": F.relu}, tmp_path / "code.pt")
    with pytest.raises(UserError, match="refuses"):
        load_checkpoint(tmp_path / "code.pt", "a test file")


def test_load_source_names_the_family_it_expected(tmp_path):
    from clsp.convert import load_source

    htsat_checkpoint(tmp_path / "HTSAT.ckpt")
    torch.save(torch.load(tmp_path / "HTSAT.ckpt", weights_only=True), tmp_path / "htsat.pt")
    with pytest.raises(UserError, match="neither LAION-CLAP nor WavCaps.*clsp.convert htsat"):
        load_source(tmp_path / "htsat.pt")
