"""Config edges: recipes listed with a description, --print-config with required keys missing, old key
names answered with their new ones. (Bad overrides as one-line errors: tests/test_cli_errors.py.)"""

from __future__ import annotations

import pytest

from clsp.errors import ConfigError
from clsp.train import main as train_main
from clsp.training.compose import RENAMED, available_recipes, check_renamed, compose_config, renamed_to


def test_recipes_are_listed_with_a_description(capsys):
    assert train_main(["--recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == available_recipes()
    for line in lines:
        name, _, description = line.partition("  ")
        assert len(description.strip()) > 20, f"{name.strip()} has no description"
        assert len(line) <= 100
    assert any(ln.startswith("demo ") and "demo corpus" in ln for ln in lines)


def test_print_config_shows_required_settings_as_missing(capsys):
    assert train_main(["recipe=clap_finetune", "--print-config"]) == 0
    assert "train: ???" in capsys.readouterr().out
    assert train_main(["recipe=fusionaudio_retrieval_ft", "--print-config"]) == 0
    assert "init_from: ???" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="required setting.*data.train"):
        compose_config(["recipe=clap_finetune"])


# The README's list of renamed keys, each as a user would write it.
README_RENAMES = {
    "optim.name": "optim.optimizer._target_", "optim.betas": "optim.optimizer.betas", "optim.eps": "optim.optimizer.eps",
    "optim.warmup_steps": "optim.scheduler.warmup_steps", "optim.schedule": "optim.scheduler.schedule",
    "optim.min_lr_ratio": "optim.scheduler.min_lr_ratio", "loss.global.name": "loss.global._target_",
    "caption_schedule.p_end": "data.caption_schedule.p_end",
    "loss.multipositive.caption_schedule": "data.caption_schedule",
    "trainer.progress_bar": "trainer.enable_progress_bar", "logger.wandb_project": "logger.wandb.project",
    "logger.wandb_offline": "logger.wandb.offline", "logger.wandb_entity": "logger.wandb.entity",
}


@pytest.mark.parametrize(("old", "new"), [*README_RENAMES.items(), *RENAMED.items()])
def test_every_renamed_key_says_its_new_name(old, new):
    assert renamed_to(old) == new
    for override in (f"{old}=1", f"+{old}=1"):
        with pytest.raises(ConfigError, match=f"^{old} was renamed to {new} — write {new}="):
            check_renamed([override])


def test_current_keys_are_not_renamed():
    assert [k for k in ("optim.lr", "loss.global.weight", "logger.wandb.project", "data.caption_schedule.p_end",
                        "trainer.enable_progress_bar") if renamed_to(k)] == []


def test_an_old_name_in_a_recipe_file_is_answered_too(tmp_path, monkeypatch):
    from clsp.training import compose, schema

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "old.yaml").write_text("# @package _global_\n# An old recipe\ndefaults:\n  - override /data: demo\n"
                                      "optim:\n  warmup_steps: 10\n")
    monkeypatch.setattr(compose, "recipe_dir", lambda: recipes)
    monkeypatch.setattr(schema, "recipe_dir", lambda: recipes)
    with pytest.raises(ConfigError, match="optim.warmup_steps was renamed to optim.scheduler.warmup_steps"):
        compose_config(["recipe=old"])
