"""CLSPModel on huggingface_hub's mixin: folder layout, model card, older folders, revisions and push_to_hub.

Nothing here reaches the network: hub downloads and uploads are patched.
"""

from __future__ import annotations

import json

import huggingface_hub
import pytest
import torch
from safetensors.torch import save_file

from clsp import CLSPConfig, CLSPModel, __version__
from clsp.tiny import tiny_tokenizer

TEXTS = ["a loud high beep", "quiet low hum"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CLSPModel(CLSPConfig.tiny("whisper")).eval()


def _same_embeddings(a: CLSPModel, b: CLSPModel) -> None:
    torch.testing.assert_close(a.encode_text(TEXTS), b.encode_text(TEXTS))
    wave = torch.linspace(-0.5, 0.5, 16000)[None]
    torch.testing.assert_close(a.encode_audio(wave), b.encode_audio(wave))


def test_folder_is_safetensors_tokenizer_and_card(model, tmp_path):
    results = {"model": "runs/x/model", "test": {"t2a/R@1": 0.25, "a2t/mAP@10": 0.5, "n_clips": 32}, "device": "cpu"}
    model.save_pretrained(tmp_path / "m", results=results)
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".tmp"))]
    card = (tmp_path / "m" / "README.md").read_text()
    assert "library_name: clsp" in card and "pytorch_model_hub_mixin" in card
    assert "| test / t2a/R@1 | 0.25 |" in card and "| test / n_clips | 32 |" in card
    assert '"_target_": "clsp.audio.whisper.WhisperTower"' in card  # the config
    _same_embeddings(model, CLSPModel.from_pretrained(tmp_path / "m"))


def test_saving_again_refreshes_the_card(model, tmp_path):
    model.save_pretrained(tmp_path / "m", results={"test": {"t2a/R@1": 0.25}})
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "t2a/R@1" not in card and "## Evaluation" not in card


def test_folder_in_the_previous_layout_still_loads(model, tmp_path):
    # What save_pretrained wrote before the hub mixin: config.json, model.safetensors and the
    # tokenizer files, no model card. Built here by hand in that layout.
    old = tmp_path / "old"
    old.mkdir()
    config = {"clsp_config": model.portable_config().to_dict(), "clsp_version": __version__}
    (old / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(old / "model.safetensors"),
              metadata={"format": "pt"})
    tiny_tokenizer(save_to=old)
    loaded = CLSPModel.from_pretrained(old)
    assert not loaded.training
    _same_embeddings(model, loaded)


def test_hub_id_is_fetched_at_the_asked_revision(model, tmp_path, monkeypatch):
    model.save_pretrained(tmp_path / "snapshot")
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path / "snapshot")

    monkeypatch.setattr("clsp.folders.snapshot_download", fake_snapshot_download)
    loaded = CLSPModel.from_pretrained("someone/clsp-tiny", revision="v1.0", cache_dir=str(tmp_path / "cache"))
    assert calls == [("someone/clsp-tiny", {"revision": "v1.0", "cache_dir": str(tmp_path / "cache"),
                                            "force_download": False, "local_files_only": False, "token": None})]
    _same_embeddings(model, loaded)


def test_unreachable_hub_id_is_one_clear_error(tmp_path, monkeypatch):
    def offline(repo_id, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr("clsp.folders.snapshot_download", offline)
    with pytest.raises(FileNotFoundError, match="someone/missing is neither a local model folder nor a reachable "
                                                "hub id at revision v2"):
        CLSPModel.from_pretrained("someone/missing", revision="v2")
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        CLSPModel.from_pretrained(tmp_path / "nope" / "model")


def test_push_to_hub_uploads_the_saved_folder(model, tmp_path, monkeypatch):
    uploads = []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, *, repo_id, folder_path, revision=None, **kwargs):
            # The temporary folder is gone after the call; keep what it held.
            files = {p.name: p.read_bytes() for p in folder_path.iterdir()}
            uploads.append({"repo_id": repo_id, "revision": revision, "files": files})
            return f"https://huggingface.co/{repo_id}/commit/abc"

    monkeypatch.setattr(huggingface_hub.hub_mixin, "HfApi", FakeApi)
    url = model.push_to_hub("someone/clsp-tiny", branch="dev", model_card_kwargs={"results": {"test": {"t2a/R@1": 0.5}}})
    assert url.endswith("/commit/abc")
    (upload,) = uploads
    assert upload["repo_id"] == "someone/clsp-tiny" and upload["revision"] == "dev"
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(upload["files"])
    assert b"| test / t2a/R@1 | 0.5 |" in upload["files"]["README.md"]
    # What was uploaded is a loadable folder.
    folder = tmp_path / "pushed"
    folder.mkdir()
    for name, data in upload["files"].items():
        (folder / name).write_bytes(data)
    _same_embeddings(model, CLSPModel.from_pretrained(folder))
