"""Official-layout adapters on generated replicas: labels follow each release's naming rules, missing clips are counted."""

from __future__ import annotations

import pytest
import replicas

from clsp.errors import UserError
from clsp.evaluation.catalog import load_official, locate, parse_official_spec, with_labels


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    return root, replicas.all_sets(root)


def test_audiocaps_names_captions_and_missing(sets):
    _, dirs = sets
    found = load_official("audiocaps", dirs["audiocaps"])
    present = [vid for vid, _, pattern in replicas.AUDIOCAPS if pattern]
    assert [c.key for c in found.clips] == present  # every naming variant matched, CSV order kept
    assert all(len(c.captions) == 5 for c in found.clips)
    assert found.clips[0].captions[1] == "sound 0, take 1: a dog barks"  # stored order
    assert found.listed == len(replicas.AUDIOCAPS) + 1
    assert sorted(m.split(":")[0] for m in found.missing) == ["brokenABCDE", "missingAAA1", "missingAAA2"]
    assert "unreadable" in next(m for m in found.missing if m.startswith("broken"))
    assert found.clips[-1].path.name == "zzzzzzzzzz1_70_80.flac"  # from the test/ subfolder


def test_clotho_odd_names(sets):
    found = load_official("clotho", sets[1]["clotho"])
    assert [c.key for c in found.clips] == [n for n in replicas.CLOTHO if "missing" not in n]
    assert found.clips[0].captions[0] == 'caption 1 of "Rain, on the roof 01.wav", with a comma'
    assert [len(c.captions) for c in found.clips] == [5] * 4
    assert found.missing == ["gone, missing.wav: no audio file"]


def test_esc50_and_us8k_labels_and_folds(sets):
    found = load_official("esc50", sets[1]["esc50"])
    _, clips, names = with_labels(found, None)
    assert names == ["dog", "rain", "chirping_birds", "crying_baby"]  # the release's target order
    for clip in clips:  # name <fold>-<src>-<take>-<target>.wav
        fold, _, _, target = clip.key[: -len(".wav")].split("-")
        assert clip.attributes["fold"] == fold and clip.label == replicas.ESC50_CLASSES[int(target)]
    assert len(clips) == 19 and found.missing == ["5-1205-B-20.wav: no audio file"]
    us = load_official("us8k", sets[1]["us8k"])
    _, clips, names = with_labels(us, None)
    assert names == ["air_conditioner", "children_playing", "dog_bark"]
    for clip in clips:  # <fsID>-<classID>-<occurrence>-<slice>.wav in audio/fold<fold>/
        assert clip.path.parent.name == f"fold{clip.attributes['fold']}"
        assert clip.label == replicas.US8K_CLASSES[int(clip.key.split("-")[1])]
    assert len(us.missing) == 1


def test_ravdess_labels_from_file_names(sets):
    found = load_official("ravdess", sets[1]["ravdess"])
    emotions = {"01": "neutral", "03": "happy", "05": "angry", "06": "fearful"}
    assert len(found.clips) == 16
    for clip in found.clips:
        parts = clip.key.split("/")[1][: -len(".wav")].split("-")
        assert clip.attributes["emotion"] == emotions[parts[2]]
        assert clip.attributes["intensity"] == {"01": "normal", "02": "strong"}[parts[3]]
        assert clip.attributes["gender"] == ("male" if int(parts[6]) % 2 else "female")  # odd actors male
    assert sorted(m.split(":")[1].strip().split(" ")[0] for m in found.missing) == ["not", "song"]
    _, clips, names = with_labels(found, "gender")
    assert names == ["male", "female"] and len(clips) == 16
    _, _, names = with_labels(found, "emotion")
    assert len(names) == 8  # every RAVDESS emotion is a candidate, present or not


def test_crema_d_emotion_and_demographics(sets):
    found = load_official("crema-d", sets[1]["crema-d"])
    assert len(found.clips) == 12 and len(found.missing) == 1  # the unknown emotion code
    codes = {"ANG": "angry", "NEU": "neutral", "SAD": "sad"}
    for clip in found.clips:
        actor, _, code, _ = clip.key[: -len(".wav")].split("_")
        assert clip.attributes["emotion"] == codes[code]
        if actor in replicas.CREMAD_AGES:
            age = replicas.CREMAD_AGES[actor]
            assert clip.attributes["age"] == ("young" if age < 30 else "middle-aged" if age < 50 else "old")
            assert clip.attributes["gender"] == ("male" if actor == "1001" else "female")
        else:
            assert "age" not in clip.attributes  # actor 1004 is not in VideoDemographics.csv
    indices, clips, names = with_labels(found, "age")
    assert len(clips) == 9 and names == ["young", "middle-aged", "old"]
    with pytest.raises(UserError, match="no label column 'pitch'"):
        with_labels(found, "pitch")


def test_locate_and_spec(sets, tmp_path):
    root, dirs = sets
    for name, folder in dirs.items():
        assert locate(name, root) == folder
    (tmp_path / "test.csv").write_text("audio,caption\nx.wav,hi\n")  # not AudioCaps' header
    assert locate("audiocaps", tmp_path) is None
    assert parse_official_spec("esc50:/d/ESC-50") == ("esc50", parse_official_spec("esc50:/d/ESC-50")[1])
    assert parse_official_spec("CREMA-D:/x")[0] == "crema-d"
    assert parse_official_spec("/data/table.csv") is None and parse_official_spec("s3://b/x.tar") is None
    with pytest.raises(UserError, match="meta/esc50.csv"):
        load_official("esc50", tmp_path)
    with pytest.raises(UserError, match="unknown split"):
        load_official("clotho", dirs["clotho"], split="dev")
