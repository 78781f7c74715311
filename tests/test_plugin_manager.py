"""The plugin manager: runtime registration, duplicates, typos in hook names, blocking."""

from __future__ import annotations

import numpy as np
import pytest

import fzoo
from fzoo import plugin_manager as pmod
from fzoo.plugin_manager import PluginError, get_registry, register_plugin, unregister_plugin


class Constant(fzoo.FeatureExtractor):
    """A constant feature (test double)."""

    name = "constant-feature"

    class Params(fzoo.Params):
        pass

    def extract(self, batch):
        return np.ones((batch.shape[0], 2), dtype=np.float32)


class Good:
    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Constant)


class Typo:
    @staticmethod
    @fzoo.hookimpl(optionalhook=True)
    def fzoo_register_feature_extractor(register):  # missing "s"
        register(Constant)


class Duplicate:
    class Fft(fzoo.FeatureExtractor):
        name = "fft-spectrum"

    @staticmethod
    @fzoo.hookimpl
    def fzoo_register_feature_extractors(register):
        register(Duplicate.Fft)


def test_runtime_registration_round_trip():
    register_plugin(Good, name="good-test")
    try:
        reg = get_registry()
        assert "constant-feature" in reg.names("feature_extractor")
        assert reg.owner("feature_extractor", "constant-feature") == "good-test"
        assert reg.plugins["good-test"].hooks == ["fzoo_register_feature_extractors"]
    finally:
        unregister_plugin("good-test")
    assert "constant-feature" not in get_registry().names("feature_extractor")


def test_misspelled_hook_is_reported():
    register_plugin(Typo, name="typo-test")
    try:
        info = get_registry().plugins["typo-test"]
        assert "fzoo_register_feature_extractor" in info.error
        assert "did you mean 'fzoo_register_feature_extractors'" in info.error
    finally:
        unregister_plugin("typo-test")


def test_duplicate_name_names_both_plugins_and_leaves_registry_usable():
    with pytest.raises(PluginError) as info:
        register_plugin(Duplicate, name="dupe-test")
    assert "'frequency'" in str(info.value) and "'dupe-test'" in str(info.value)
    assert "FZOO_BLOCK_PLUGINS=dupe-test" in str(info.value)
    assert "fft-spectrum" in get_registry(refresh=True).names("feature_extractor")


def test_unknown_component_lists_installed_and_suggests():
    with pytest.raises(LookupError) as info:
        get_registry().get("classifier", "random-forrest")
    msg = str(info.value)
    assert "did you mean 'random-forest'?" in msg and "logistic-regression" in msg


def test_blocking_a_builtin(monkeypatch):
    monkeypatch.setenv("FZOO_BLOCK_PLUGINS", "frequency")
    pmod.reset()
    try:
        reg = get_registry()
        assert "frequency" not in reg.plugins
        assert not {"fft-spectrum", "dct-spectrum"} & set(reg.names("feature_extractor"))
        assert "svm" in reg.names("classifier")
    finally:
        monkeypatch.delenv("FZOO_BLOCK_PLUGINS")
        pmod.reset()
    assert "fft-spectrum" in get_registry().names("feature_extractor")


def test_fingerprint_tracks_params_and_version():
    a = fzoo.create_component("feature_extractor", "fft-spectrum", bins=32)
    b = fzoo.create_component("feature_extractor", "fft-spectrum", bins=32)
    c = fzoo.create_component("feature_extractor", "fft-spectrum", bins=33)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    d = fzoo.create_component("feature_extractor", "fft-64")
    assert d.get_params()["bins"] == 64
