"""Lazy package namespaces: a name loads its submodule on first use, an unknown name is an AttributeError."""

import subprocess
import sys

import pytest

import instrumentd.pipeline as pipeline
from instrumentd.pipeline.lazy import lazy_exports


def test_a_name_comes_from_its_submodule_and_an_unknown_one_is_refused():
    getattr_, names = lazy_exports("json", {"dumps": "decoder"})
    assert names == ["dumps"]
    with pytest.raises(AttributeError, match="'json' has no attribute 'loads'"):
        getattr_("loads")
    assert pipeline.load_audio.__module__ == "instrumentd.pipeline.audio"
    assert "load_audio" in pipeline.__all__


def test_importing_a_light_submodule_does_not_load_torch():
    code = "import sys, instrumentd.pipeline.errors, instrumentd.model.classes; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
