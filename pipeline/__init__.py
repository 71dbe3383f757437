"""Audio in, network inputs out: decoding, windows, mel front-end, pitch engines and masks."""

import importlib
from typing import Any

# name -> the submodule that defines it; imported on first use, so that importing one light submodule
# (errors, config) does not load torch
_EXPORTS = {
    "AudioError": "errors",
    "DEFAULT": "config",
    "ENGINES": "pitch",
    "FeatureConfig": "config",
    "FeatureExtractor": "features",
    "Features": "features",
    "InstrumentdError": "errors",
    "MelFrontEnd": "mel",
    "ParameterError": "errors",
    "PitchEngine": "pitch",
    "TEN_MS": "config",
    "cut_windows": "windows",
    "f0_to_mask": "mask",
    "find_audio": "audio",
    "get_engine": "pitch",
    "librosa_pyin": "pitch",
    "load_audio": "audio",
    "resample": "audio",
    "to_mono": "audio",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
