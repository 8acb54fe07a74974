"""Model cards: a transformers export's card (what the hub's widget and snippet read), its upload, and the
clsp folder card's pointer to the other forms. No network: the upload is recorded, not sent."""

from __future__ import annotations

from export_models import saved_model, tiny_htsat
from huggingface_hub import HfApi, ModelCard

from clsp.export import main


def test_transformers_export_card_and_push(tmp_path, monkeypatch):
    _, folder = saved_model(tiny_htsat(), tmp_path / "clsp")
    calls = []
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id)) or
                        f"https://huggingface.co/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, **kw):
        card = ModelCard.load(f"{folder_path}/README.md")  # the card as uploaded
        calls.append(("upload", repo_id, card.data.library_name, card.data.pipeline_tag, card.text))

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    out = tmp_path / "clap"
    assert main([str(folder), str(out), "--format", "transformers", "--push-to-hub", "me/tiny-clap"]) == 0
    assert calls[0] == ("create", "me/tiny-clap")
    _, repo, library, tag, text = calls[1]
    assert (repo, library, tag) == ("me/tiny-clap", "transformers", "zero-shot-audio-classification")
    assert 'pipeline("zero-shot-audio-classification"' in text and "ClapModel.from_pretrained" in text
    assert (out / "README.md").read_text().startswith(
        "---\nlibrary_name: transformers\npipeline_tag: zero-shot-audio-classification\n")


def test_clsp_folder_card_says_how_to_get_the_other_forms(tmp_path):
    _, folder = saved_model(tiny_htsat(), tmp_path / "clsp")
    card = (folder / "README.md").read_text()
    assert "--format transformers" in card and "--format onnx" in card and "AutoModel" in card
