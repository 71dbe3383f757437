"""Audio in, network inputs out: decoding, windows, mel front-end, pitch engines and masks."""

from .lazy import lazy_exports

_EXPORTS = {  # name -> the submodule that defines it, imported on first use
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

__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
