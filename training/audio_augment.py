"""Training clips mixed from stems on the device, new every epoch: the arrangement and the room,
microphone, processing and noise a real recording brings. Not part of the paper's protocol.

A clip of class ``c`` is a 3 s crop of a solo ``c`` stem, played back a little faster or slower
(varispeed: pitch and tempo move together, within +-:attr:`MixRecipe.semitones`; for a
:attr:`MixRecipe.vibrato_share` of clips, off by default, the reading speed swings as a vibrato, so
that a vibrato, which the banks give to strings, winds and voice but never to organ, piano or
guitars, stops being a cue to the class), over accompaniment
and drum stems at random levels under it (the label stays ``c``, as in IRMAS), sometimes with a
second line of its own class (the same stem read a third to a sixth lower, which a stem only a little
longer than the clip allows, from another point: double stops, two players of one section),
sometimes with a second solo part of another class a little quieter (the target splits by power). A
non-music clip (speech, noise, hum, drums alone...) gets the same treatment and a uniform target, so
that the network learns to spread its belief when it hears no instrument ("outlier exposure",
Hendrycks et al. 2019); :mod:`instrumentd.model.decision` turns that into "no predominant instrument".

Effects, each with its own probability, in signal order: room reverb (a response of
training/rooms.py) and a microphone/EQ colouring (a random smooth curve over log frequency,
sometimes a telephone-like band limit), applied together in one FFT; a dynamic-range compressor
(10 ms RMS detector, random threshold and ratio); coloured noise (white to brown) and mains hum
(50/60 Hz with harmonics) at random signal-to-noise ratios; a random final level. Codec artefacts
come from the bank itself: its stems are stored lossy (OGG Vorbis), and a share of them went through
MP3, AAC or Opus at broadcast bitrates when it was rendered with ``synth-stems --codecs``.

Everything here is torch on whatever device the stems live on: torchaudio and torch-audiomentations
(which needs torchaudio) are not installed with the CPU build of torch this project runs on, and a
CPU library such as audiomentations would move every clip to the host and back each epoch.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from instrumentd.model.classes import CLASSES
from instrumentd.pipeline.errors import ParameterError

from .stem_bank import StemBank

EQ_POINTS = 10  # control points of the random EQ curve, spread over log frequency
EQ_FMIN = 20.0  # hz
COMPRESSOR_FRAME = 441  # samples: 10 ms at 44.1 kHz
EFFECT_BATCH = 256  # clips per FFT pass (memory: about 1 GB on the device at 3 s)


@dataclasses.dataclass(frozen=True)
class MixRecipe:
    """Shares, probabilities and ranges (dB) of the on-the-fly mix; stored with the checkpoint."""

    none_share: float = 0.15  # share of clips that are non-music (uniform target)
    second_share: float = 0.2  # share of music clips with a second solo part of another class
    second_db: tuple[float, float] = (-6.0, 0.0)  # its RMS against the first
    double_share: float = 0.0  # share of music clips whose solo stem also plays a second line
    double_semitones: tuple[float, float] = (3.0, 9.0)  # that line's interval below the first
    double_db: tuple[float, float] = (-6.0, 0.0)  # its RMS against the first
    vibrato_share: float = 0.0  # share of music clips whose solo part is read with a vibrato
    vibrato_cents: tuple[float, float] = (10.0, 40.0)  # its depth, +-
    vibrato_hz: tuple[float, float] = (4.5, 7.0)  # its rate
    acc_prob: float = 0.75
    acc_db: tuple[float, float] = (-18.0, -3.0)  # accompaniment RMS against the solo part
    drums_prob: float = 0.5
    drums_db: tuple[float, float] = (-20.0, -3.0)
    semitones: float = 1.0  # varispeed range, +-
    reverb_prob: float = 0.6
    eq_prob: float = 0.8
    eq_db: float = 9.0  # control points uniform in +-eq_db
    band_prob: float = 0.15  # a telephone / small-speaker band limit
    compress_prob: float = 0.4
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (6.0, 45.0)
    hum_prob: float = 0.15
    hum_db: tuple[float, float] = (12.0, 45.0)  # signal over hum
    level_db: tuple[float, float] = (-40.0, -8.0)  # final RMS, dBFS

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_changes(self, text: str) -> "MixRecipe":
        """A copy with ``KEY=VALUE[,KEY=VALUE...]`` applied (a range as ``LOW:HIGH``), checked by name."""
        changes: dict = {}
        fields = {f.name: f for f in dataclasses.fields(self)}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            if key not in fields or not value:
                raise ParameterError(f"bad recipe setting {item!r}; settings are {', '.join(fields)}")
            try:
                if isinstance(getattr(self, key), tuple):
                    low, high = (float(v) for v in value.split(":"))
                    changes[key] = (low, high)
                else:
                    changes[key] = float(value)
            except ValueError:
                raise ParameterError(f"bad recipe value {item!r} (a number, or LOW:HIGH for a range)") from None
        return dataclasses.replace(self, **changes)


def _uniform(gen: torch.Generator, n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def _chance(gen: torch.Generator, n: int, p: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def _pick(gen: torch.Generator, pool: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` entries of ``pool`` (int64 stem indices), drawn with replacement."""
    return pool[torch.randint(0, len(pool), (n,), generator=gen, device=pool.device)]


def varispeed_crops(stems: torch.Tensor, index: torch.Tensor, rate: torch.Tensor, length: int,
                    gen: torch.Generator, swing: torch.Tensor | None = None) -> torch.Tensor:
    """``float32 [B, length]``: stems ``index`` (of ``stems: [N, S]``) read ``rate`` times as fast
    (linear interpolation) from a random start, so that each crop fits inside its stem; ``swing``
    (``float32 [B, length]``, samples, from :func:`vibrato_swing`) moves each read position by that
    much, a vibrato when it swings periodically."""
    span = stems.shape[1] - 2
    rate = rate.clamp(max=span / length)
    room = (span - rate * length).clamp_min(0)
    start = torch.rand(len(index), generator=gen, device=stems.device) * room
    pos = start[:, None] + rate[:, None] * torch.arange(length, device=stems.device, dtype=torch.float32)
    if swing is not None:
        pos = (pos + swing).clamp(0, span)
    left = pos.long()
    frac = (pos - left).to(torch.float32)
    rows = stems[index]
    a = rows.gather(1, left).float()
    b = rows.gather(1, left + 1).float()
    return a + frac * (b - a)


def vibrato_swing(gen: torch.Generator, n: int, length: int, sample_rate: int, recipe: MixRecipe,
                  device: torch.device) -> torch.Tensor:
    """``float32 [n, length]``: read-position offsets (samples) that give a ``recipe.vibrato_share`` of
    ``n`` clips a sinusoidal vibrato (depth :attr:`MixRecipe.vibrato_cents`, rate
    :attr:`MixRecipe.vibrato_hz`, random phase), zeros for the others.

    The speed ``1 + m sin(w t + p)`` (``m`` the depth as a ratio, ``w`` radians a sample) integrates to
    the offset ``(m / w) (cos p - cos(w t + p))``: exact, where a running sum of speeds in float32
    would drift over 132,300 samples."""
    depth = 2.0 ** (_uniform(gen, n, *recipe.vibrato_cents, device) / 1200) - 1
    omega = 2 * math.pi * _uniform(gen, n, *recipe.vibrato_hz, device) / sample_rate
    phase = 2 * math.pi * torch.rand(n, generator=gen, device=device)
    on = _chance(gen, n, recipe.vibrato_share, device)
    t = torch.arange(length, device=device, dtype=torch.float32)
    swing = (depth / omega)[:, None] * (torch.cos(phase)[:, None] - torch.cos(omega[:, None] * t + phase[:, None]))
    return torch.where(on[:, None], swing, torch.zeros_like(swing))


def with_second_line(stems: torch.Tensor, first: torch.Tensor, speed: torch.Tensor, solo: torch.Tensor,
                     recipe: MixRecipe, gen: torch.Generator) -> torch.Tensor:
    """``float32 [B, length]``, the shape of ``solo``: for a ``recipe.double_share`` of the clips, stems
    ``first`` read again :attr:`MixRecipe.double_semitones` lower than ``speed`` from another point, at
    :attr:`MixRecipe.double_db` against ``solo``; zeros for the others."""
    device = solo.device
    n = len(first)
    interval = _uniform(gen, n, *recipe.double_semitones, device).round()
    line = varispeed_crops(stems, first, speed * 2.0 ** (-interval / 12), solo.shape[1], gen)
    line = _at_db(line, rms(solo), _uniform(gen, n, *recipe.double_db, device))
    return torch.where(_chance(gen, n, recipe.double_share, device)[:, None], line, torch.zeros_like(line))


def rms(x: torch.Tensor) -> torch.Tensor:
    """``[B]``: root mean square of ``x: [B, samples]``."""
    return x.pow(2).mean(dim=1).clamp_min(1e-12).sqrt()


def _at_db(x: torch.Tensor, reference: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """``x`` scaled so its RMS is ``db`` dB against ``reference`` (an RMS per item)."""
    return x * (reference * 10.0 ** (db / 20) / rms(x))[:, None]


def _eq_curves(gen: torch.Generator, n: int, freqs: torch.Tensor, recipe: MixRecipe) -> torch.Tensor:
    """``[n, bins]`` linear gains: smooth random curves over log frequency, some band-limited."""
    device = freqs.device
    points = (torch.rand(n, EQ_POINTS, generator=gen, device=device) * 2 - 1) * recipe.eq_db
    nyquist = float(freqs[-1])
    pos = (torch.log(freqs.clamp_min(EQ_FMIN)) - math.log(EQ_FMIN)) / (math.log(nyquist) - math.log(EQ_FMIN))
    pos = pos.clamp(0, 1) * (EQ_POINTS - 1)
    lo = pos.floor().long().clamp(max=EQ_POINTS - 2)
    frac = pos - lo
    curve_db = points[:, lo] * (1 - frac) + points[:, lo + 1] * frac
    gain = 10.0 ** (curve_db / 20)
    band = _chance(gen, n, recipe.band_prob, device)
    low_cut = _uniform(gen, n, 150.0, 500.0, device)[:, None]
    high_cut = _uniform(gen, n, 3000.0, 8000.0, device)[:, None]
    f = freqs[None, :]
    limit = 1 / torch.sqrt(1 + (low_cut / f.clamp_min(1.0)) ** 4) / torch.sqrt(1 + (f / high_cut) ** 8)
    return torch.where(band[:, None], gain * limit, gain)


def room_and_eq(x: torch.Tensor, rooms: torch.Tensor, gen: torch.Generator, recipe: MixRecipe,
                sample_rate: int) -> torch.Tensor:
    """``x: [B, L]`` through a random room response (some) and EQ curve (some), one FFT per item."""
    b, length = x.shape
    n_fft = 1 << (length + rooms.shape[1] - 1).bit_length()
    freqs = torch.fft.rfftfreq(n_fft, 1 / sample_rate).to(x.device)
    reverb = _chance(gen, b, recipe.reverb_prob, x.device)
    eq = _chance(gen, b, recipe.eq_prob, x.device)
    room = _pick(gen, torch.arange(len(rooms), device=x.device), b)
    out = torch.empty_like(x)
    for i in range(0, b, EFFECT_BATCH):
        sl = slice(i, i + EFFECT_BATCH)
        n = x[sl].shape[0]
        spectrum = torch.fft.rfft(x[sl], n_fft)
        response = torch.fft.rfft(rooms[room[sl]], n_fft)
        spectrum = torch.where(reverb[sl, None], spectrum * response, spectrum)
        curves = _eq_curves(gen, n, freqs, recipe)
        spectrum = torch.where(eq[sl, None], spectrum * curves, spectrum)
        out[sl] = torch.fft.irfft(spectrum, n_fft)[:, :length]
    return out


def compress(x: torch.Tensor, gen: torch.Generator, recipe: MixRecipe) -> torch.Tensor:
    """Some items of ``x: [B, L]`` through a compressor: 10 ms RMS frames, threshold 6-20 dB under
    the loudest frame, ratio 2-8, gain smoothed over 50 ms."""
    b, length = x.shape
    frames = -(-length // COMPRESSOR_FRAME)
    padded = torch.nn.functional.pad(x, (0, frames * COMPRESSOR_FRAME - length))
    level = 10 * torch.log10(padded.view(b, frames, COMPRESSOR_FRAME).pow(2).mean(2).clamp_min(1e-10))
    threshold = level.amax(1, keepdim=True) - _uniform(gen, b, 6.0, 20.0, x.device)[:, None]
    ratio = _uniform(gen, b, 2.0, 8.0, x.device)[:, None]
    gain_db = ((1 / ratio - 1) * (level - threshold)).clamp(max=0)
    gain_db = torch.nn.functional.avg_pool1d(gain_db[:, None], 5, 1, 2, count_include_pad=False)[:, 0]
    gain = (10.0 ** (gain_db / 20)).repeat_interleave(COMPRESSOR_FRAME, dim=1)[:, :length]
    return torch.where(_chance(gen, b, recipe.compress_prob, x.device)[:, None], x * gain, x)


def coloured_noise(gen: torch.Generator, b: int, length: int, device: torch.device) -> torch.Tensor:
    """``[b, length]`` noise with spectra from white (1/f^0) to brown (1/f^2), unit RMS."""
    white = torch.randn(b, length, generator=gen, device=device)
    spectrum = torch.fft.rfft(white)
    k = torch.arange(spectrum.shape[1], device=device).clamp_min(1).float()
    alpha = _uniform(gen, b, 0.0, 2.0, device)[:, None]
    noise = torch.fft.irfft(spectrum * k[None, :] ** (-alpha / 2), length)
    return noise / rms(noise)[:, None]


def mains_hum(gen: torch.Generator, b: int, length: int, sample_rate: int, device: torch.device) -> torch.Tensor:
    """``[b, length]`` hum at 50 or 60 Hz with ten harmonics of random, falling strength, unit RMS."""
    f0 = torch.where(_chance(gen, b, 0.5, device), 50.0, 60.0)[:, None, None]
    k = torch.arange(1, 11, device=device, dtype=torch.float32)[None, :, None]
    amp = torch.rand(b, 10, 1, generator=gen, device=device) * k ** -_uniform(gen, b, 0.5, 2.0, device)[:, None, None]
    phase = torch.rand(b, 10, 1, generator=gen, device=device) * 2 * math.pi
    t = torch.arange(length, device=device, dtype=torch.float32)[None, None, :] / sample_rate
    hum = (amp * torch.sin(2 * math.pi * k * f0 * t + phase)).sum(1)
    return hum / rms(hum)[:, None]


@dataclasses.dataclass
class MixedBatch:
    """``audio: float32 [B, samples]``; ``target: float32 [B, n_classes]`` (one-hot, split by power for
    two solo parts, uniform for non-music); ``label: int64 [B]``, the loudest class (-1 for non-music)."""

    audio: torch.Tensor
    target: torch.Tensor
    label: torch.Tensor


@torch.no_grad()
def mix_batch(bank: StemBank, pools: dict[str, torch.Tensor], size: int, length: int, recipe: MixRecipe,
              gen: torch.Generator, first: torch.Tensor | None = None) -> MixedBatch:
    """``size`` new clips of ``length`` samples from the stems at ``pools`` (indices per role); the
    first solo part of each is the ``pred`` stem ``first[i]`` when given (int64 [size]), else drawn."""
    device = bank.label.device
    n_classes = len(CLASSES)
    is_none = _chance(gen, size, recipe.none_share, device)
    speed = 2.0 ** (_uniform(gen, size, -recipe.semitones, recipe.semitones, device) / 12)

    first = _pick(gen, pools["pred"], size) if first is None else first
    label = bank.label[first]
    swing = (vibrato_swing(gen, size, length, bank.sample_rate, recipe, device)
             if recipe.vibrato_share > 0 else None)
    solo = varispeed_crops(bank.audio["pred"], first, speed, length, gen, swing)
    other = varispeed_crops(bank.audio["none"], _pick(gen, pools["none"], size), speed, length, gen)
    if recipe.double_share > 0:
        solo = solo + with_second_line(bank.audio["pred"], first, speed, solo, recipe, gen)
    main = torch.where(is_none[:, None], other, solo)
    level = rms(main)

    # a second solo part, of another class
    second = _pick(gen, pools["pred"], size)
    two = ~is_none & _chance(gen, size, recipe.second_share, device) & (bank.label[second] != label)
    db = _uniform(gen, size, *recipe.second_db, device)
    part = _at_db(varispeed_crops(bank.audio["pred"], second, speed, length, gen), level, db)
    mix = main + torch.where(two[:, None], part, torch.zeros_like(part))
    share = torch.where(two, 10.0 ** (db / 10) / (1 + 10.0 ** (db / 10)), torch.zeros_like(db))
    target = (1 - share)[:, None] * torch.nn.functional.one_hot(label, n_classes).float()
    target = target + share[:, None] * torch.nn.functional.one_hot(bank.label[second], n_classes).float()
    target = torch.where(is_none[:, None], torch.full_like(target, 1.0 / n_classes), target)

    for role, prob, rng_db in (("acc", recipe.acc_prob, recipe.acc_db), ("drums", recipe.drums_prob, recipe.drums_db)):
        layer = varispeed_crops(bank.audio[role], _pick(gen, pools[role], size), speed, length, gen)
        layer = _at_db(layer, level, _uniform(gen, size, *rng_db, device))
        mix = mix + torch.where(_chance(gen, size, prob, device)[:, None], layer, torch.zeros_like(layer))

    mix = room_and_eq(mix, bank.rooms, gen, recipe, bank.sample_rate)
    mix = compress(mix, gen, recipe)
    level = rms(mix)
    noise = _at_db(coloured_noise(gen, size, length, device), level, -_uniform(gen, size, *recipe.snr_db, device))
    mix = mix + torch.where(_chance(gen, size, recipe.noise_prob, device)[:, None], noise, torch.zeros_like(noise))
    hum = _at_db(mains_hum(gen, size, length, bank.sample_rate, device), level,
                 -_uniform(gen, size, *recipe.hum_db, device))
    mix = mix + torch.where(_chance(gen, size, recipe.hum_prob, device)[:, None], hum, torch.zeros_like(hum))
    mix = _at_db(mix, torch.ones(size, device=device), _uniform(gen, size, *recipe.level_db, device))
    return MixedBatch(mix.clamp(-1.0, 1.0), target, torch.where(is_none, -1, label))
