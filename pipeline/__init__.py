"""Audio in, network inputs out: decoding, windows, mel front-end, pitch engines and masks."""

from .audio import find_audio, load_audio, resample, to_mono
from .config import DEFAULT, TEN_MS, FeatureConfig
from .errors import AudioError, InstrumentdError, ParameterError
from .features import FeatureExtractor, Features
from .mask import f0_to_mask
from .mel import MelFrontEnd
from .pitch import ENGINES, PitchEngine, get_engine, librosa_pyin
from .windows import cut_windows

__all__ = [
    "AudioError",
    "DEFAULT",
    "ENGINES",
    "FeatureConfig",
    "FeatureExtractor",
    "Features",
    "InstrumentdError",
    "MelFrontEnd",
    "ParameterError",
    "PitchEngine",
    "TEN_MS",
    "cut_windows",
    "f0_to_mask",
    "find_audio",
    "get_engine",
    "librosa_pyin",
    "load_audio",
    "resample",
    "to_mono",
]
