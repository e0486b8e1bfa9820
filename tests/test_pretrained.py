"""Hub-layout model folders: save_pretrained -> foundry.load(folder), errors, cache, push/pull (local only)."""
import json
import shutil
import sys
import types

import pytest
import torch

import foundry
from foundry import FoundryInputError
from foundry.cli import main as cli
from foundry.models.student import FoundryStudent, student_config_for


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return foundry.create_model("tiny").eval()


@pytest.fixture(scope="module")
def student(teacher):
    torch.manual_seed(1)
    return FoundryStudent(student_config_for("foundry-tiny", teacher, teacher="tiny-teacher")).eval()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FOUNDRY_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def front_matter(text):
    assert text.startswith("---\n")
    block = text.split("\n---\n", 1)[0].splitlines()[1:]
    return {line.split(":", 1)[0]: json.loads(line.split(":", 1)[1]) for line in block}


@pytest.mark.parametrize("which", ["teacher", "student"])
def test_round_trip_teacher_and_student(which, teacher, student, tmp_path, cloud):
    model = {"teacher": teacher, "student": student}[which]
    folder = foundry.save_pretrained(model, tmp_path / f"my-{which}", info={"data": ["modelnet10:train"]},
                                     license="apache-2.0")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = foundry.load(folder)
    assert not loaded.training and loaded.kind == model.kind and loaded.config == model.config
    assert loaded.checkpoint_info == {"data": ["modelnet10:train"]}
    torch.testing.assert_close(loaded.forward_features(cloud), model.forward_features(cloud), rtol=0, atol=0)
    meta = front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "foundry" and meta["license"] == "apache-2.0"
    assert meta["model_name"] == f"my-{which}" and meta["foundry_kind"] == model.kind
    assert meta["datasets"] == ["modelnet10"] and "point-cloud" in meta["tags"]
    assert meta.get("base_model") == ("tiny-teacher" if which == "student" else None)
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == model.kind and config["config"]["width"] == model.config.width


def test_incomplete_or_corrupt_folders_are_refused(teacher, tmp_path):
    good = foundry.save_pretrained(teacher, tmp_path / "good")

    def broken(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        with pytest.raises(FoundryInputError) as err:
            foundry.load(folder)
        return str(err.value)

    assert "lacks config.json" in broken("no-config", lambda f: (f / "config.json").unlink())
    assert "lacks model.safetensors" in broken("no-weights", lambda f: (f / "model.safetensors").unlink())
    assert "corrupt" in broken("bad-config", lambda f: (f / "config.json").write_text("{not json"))

    def flip(f):  # one byte of the weights changed: the file still parses, only the digest tells
        data = bytearray((f / "model.safetensors").read_bytes())
        data[-5] ^= 0xFF
        (f / "model.safetensors").write_bytes(bytes(data))

    assert "sha256 differs" in broken("flipped", flip)
    assert "cut short" in broken("truncated", lambda f: (f / "model.safetensors").write_bytes(
        (good / "model.safetensors").read_bytes()[:1000]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FoundryInputError, match="not a pretrained-model folder"):
        foundry.load(tmp_path / "empty")


def fake_hub(remote):
    """A stand-in for huggingface_hub that serves repositories from local folders."""
    def snapshot_download(repo_id, revision=None, local_dir=None, allow_patterns=None):
        src = remote / repo_id
        if not src.is_dir():
            raise FileNotFoundError(repo_id)
        shutil.copytree(src, local_dir, dirs_exist_ok=True)
        return local_dir

    class HfApi:
        def create_repo(self, repo_id, private=False, exist_ok=False):
            (remote / repo_id).mkdir(parents=True, exist_ok=exist_ok)

        def upload_folder(self, repo_id, folder_path, allow_patterns=None, commit_message=None):
            shutil.copytree(folder_path, remote / repo_id, dirs_exist_ok=True)

    return types.SimpleNamespace(snapshot_download=snapshot_download, HfApi=HfApi)


def test_push_then_pull_by_hub_name_then_offline(student, tmp_path, home, monkeypatch, cloud, capsys):
    folder = foundry.save_pretrained(student, tmp_path / "s-tiny")
    remote = tmp_path / "remote"
    monkeypatch.setitem(sys.modules, "huggingface_hub", fake_hub(remote))
    assert cli(["models", "push", str(folder), "alice/s-tiny"]) == 0
    assert (remote / "alice/s-tiny/model.safetensors").exists()
    model = foundry.load("hf:alice/s-tiny")  # downloaded into the cache
    assert (home / "models" / "alice--s-tiny" / "config.json").exists()
    torch.testing.assert_close(model.forward_tokens(cloud)[0], student.forward_tokens(cloud)[0], rtol=0, atol=0)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # no package, no network: the cache serves
    assert foundry.load("hf:alice/s-tiny").config == student.config
    assert foundry.load("alice/s-tiny").config == student.config
    capsys.readouterr()
    assert cli(["models", "--json", "--dir", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["alice/s-tiny"]["source"] == "cached" and rows[str(folder)]["source"] == "local"
    assert "teacher-vits" in rows and rows["teacher-vits"]["source"] == "shipped"
    with pytest.raises(FoundryInputError, match="huggingface_hub"):
        foundry.load("hf:bob/other")


def test_models_save_command_writes_a_loadable_folder(teacher, tmp_path):
    src = foundry.save(teacher, tmp_path / "t.safetensors")
    assert cli(["models", "save", str(src), str(tmp_path / "pub"), "--fp16"]) == 0
    loaded = foundry.load(tmp_path / "pub")
    assert loaded.config == teacher.config and loaded.pretrained_name == "pub"
