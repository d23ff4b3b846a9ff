"""Tests of latentnlp.data.paths: data-root precedence and the missing-data message."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentnlp.data import dataset_path, resolve_data_dir


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("LATENTNLP_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def test_argument_beats_env_var(clean_env, tmp_path):
    clean_env.setenv("LATENTNLP_DATA", str(tmp_path / "env"))
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_env_var_beats_cache(clean_env, tmp_path):
    clean_env.setenv("LATENTNLP_DATA", str(tmp_path / "env"))
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "env"


def test_cache_folder_fallbacks(clean_env, tmp_path):
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "latentnlp"
    clean_env.setenv("LATENTNLP_DATA", "")  # empty counts as unset
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "latentnlp"
    clean_env.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert resolve_data_dir() == tmp_path / "home" / ".cache" / "latentnlp"


def test_resolve_does_not_create(clean_env, tmp_path):
    resolve_data_dir()
    assert not (tmp_path / "home").exists()


def test_dataset_path_found(clean_env, tmp_path):
    (tmp_path / "20news-nvdm").mkdir()
    assert dataset_path("20news-nvdm", tmp_path) == tmp_path / "20news-nvdm"
    clean_env.setenv("LATENTNLP_DATA", str(tmp_path))
    assert dataset_path("20news-nvdm") == tmp_path / "20news-nvdm"


def test_dataset_path_missing_message(clean_env, tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        dataset_path("20news-nvdm", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "20news-nvdm") in message
    assert "--data-dir" in message and "LATENTNLP_DATA" in message
    assert isinstance(resolve_data_dir(tmp_path), Path)
