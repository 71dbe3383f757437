"""Speech from the espeak-ng program: random sentences in several languages, voices and speeds.

Two disjoint pools of languages, words and voice variants exist: ``"train"`` for the stems a
model learns "no instrument" from, and ``"check"`` for the non-music check set, so a check
clip never repeats a training voice, language or text.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess

import numpy as np
import soundfile

from instrumentd.pipeline.audio import resample, to_mono

from .render import RenderError

WORDS = {  # language -> everyday words; sentences are random runs of them
    "en": "the morning news weather today city council people train station water river music night "
          "tomorrow said report market price house children school road evening coffee window friend "
          "because never always again little place world country".split(),
    "de": "heute morgen wetter stadt menschen zug bahnhof wasser fluss abend nachrichten haus kinder "
          "schule strasse kaffee fenster freund immer wieder kleine welt land gesagt bericht markt preis".split(),
    "fr": "aujourd'hui matin temps ville gens train gare eau fleuve soir nouvelles maison enfants école "
          "route café fenêtre ami toujours encore petit monde pays dit rapport marché prix".split(),
    "es": "hoy mañana tiempo ciudad gente tren estación agua río noche noticias casa niños escuela "
          "camino café ventana amigo siempre otra pequeño mundo país dijo informe mercado precio".split(),
    "it": "oggi mattina tempo città gente treno stazione acqua fiume sera notizie casa bambini scuola "
          "strada caffè finestra amico sempre ancora piccolo mondo paese detto rapporto mercato prezzo".split(),
    "nl": "vandaag ochtend weer stad mensen trein station water rivier avond nieuws huis kinderen school "
          "weg koffie raam vriend altijd opnieuw kleine wereld land gezegd verslag markt prijs".split(),
    "pt": "hoje manhã tempo cidade pessoas comboio estação água rio noite notícias casa crianças escola "
          "estrada café janela amigo sempre outra pequeno mundo país disse relatório mercado preço".split(),
    "pl": "dzisiaj rano pogoda miasto ludzie pociąg dworzec woda rzeka wieczór wiadomości dom dzieci "
          "szkoła droga kawa okno przyjaciel zawsze znowu mały świat kraj powiedział raport rynek cena".split(),
    "sv": "idag morgon väder stad människor tåg station vatten flod kväll nyheter hus barn skola väg "
          "kaffe fönster vän alltid igen liten värld land sade rapport marknad pris".split(),
}
POOLS = {
    "train": {"languages": ("en", "de", "fr", "es", "it"),
              "variants": ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt", "klatt3", "adam", "linda", "steph")},
    "check": {"languages": ("nl", "pt", "pl", "sv"),
              "variants": ("m5", "m6", "m7", "f4", "f5", "klatt2", "klatt4", "john", "anika", "belinda")},
}


@dataclasses.dataclass(frozen=True)
class Utterance:
    """What espeak-ng says and how: ``voice`` as ``language+variant``, ``speed`` in words per minute,
    ``pitch`` 0-99 (espeak's base pitch), ``word_gap`` extra pause between words in 10 ms units."""

    text: str
    voice: str
    speed: int
    pitch: int
    word_gap: int


def random_utterance(rng: np.random.Generator, pool: str = "train") -> Utterance:
    """A random sentence of 4-14 words in one of ``pool``'s languages, voices, speeds (110-220 wpm), pitches
    and word gaps."""
    p = POOLS[pool]
    language = str(rng.choice(p["languages"]))
    words = rng.choice(WORDS[language], int(rng.integers(4, 15)))
    text = " ".join(words).capitalize() + str(rng.choice([".", ".", "?", "!", ","]))
    return Utterance(text, f"{language}+{rng.choice(p['variants'])}", int(rng.integers(110, 221)),
                     int(rng.integers(20, 80)), int(rng.integers(0, 6)))


def speak(utterance: Utterance, sr: int) -> np.ndarray:
    """``utterance`` spoken by espeak-ng: ``float32 [samples]`` at ``sr`` hz, as long as it takes."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RenderError("espeak-ng not found on PATH (Debian: apt-get install espeak-ng)")
    u = utterance
    cmd = [exe, "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch), "-g", str(u.word_gap), "--stdout", u.text]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or len(proc.stdout) < 100:
        raise RenderError(f"espeak-ng failed ({proc.returncode}) for voice {u.voice}: "
                          f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    audio, file_sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    return resample(to_mono(audio), file_sr, sr).astype(np.float32)


def talk(rng: np.random.Generator, n: int, sr: int, pool: str = "train") -> np.ndarray:
    """``float32 [n]``: random utterances one after another with 0.1-0.8 s pauses, starting at a random
    point of the first, so speech fills the clip as in a broadcast."""
    parts, total = [], 0
    lead_in = True
    while total < n:
        speech = speak(random_utterance(rng, pool), sr)
        if lead_in:
            speech = speech[int(rng.uniform(0, 0.5) * len(speech)):]
            lead_in = False
        pause = np.zeros(int(rng.uniform(0.1, 0.8) * sr), np.float32)
        parts += [speech, pause]
        total += len(speech) + len(pause)
    return np.concatenate(parts)[:n]
