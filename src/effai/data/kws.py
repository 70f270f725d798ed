"""`kws`: keyword spotting on SYNTHETIC speech, made offline by Debian's espeak-ng.

The task is Speech Commands v0.02's 12-class one (MLPerf Tiny's keyword spotting): ten
keywords, "silence" (background noise only) and "unknown" (the other Speech Commands words).
Every clip is one word spoken by espeak-ng with its own voice (an English accent and a voice
variant), speed and pitch, placed at a random offset in a 1 s, 16 kHz clip at a random level,
and mixed with noise (white, pink, brown or mains hum) at 30, 20, 10 or 5 dB SNR. The
features are MLPerf Tiny's 49 x 10 MFCCs (`effai.data.audio.mfcc`), mapped to [0, 1] with
fixed per-coefficient ranges (the convention of effai's data sets: corruptions and int8
inputs act on values in [0, 1]).

Everything is seeded: the same seed and size give the same clips bit for bit (espeak-ng's
output is deterministic for the same version and arguments). The set is cached under
`effai.fileio.cache_dir()` as `kws-<hash>.npz`, keyed by the settings and espeak-ng's
version, so only the first load synthesises.

Synthetic speech is not real speech: accuracy on this set says nothing about a model's
accuracy on real microphones, people or rooms. It exercises the pipeline (features, a KWS
network, int8, a microcontroller) on a real-shaped task without downloading anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import wave
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from effai.data.audio import mfcc
from effai.errors import InputError

SAMPLE_RATE = 16000
# MLPerf Tiny's label order (keyword_spotting/get_dataset.py), lower-cased.
KEYWORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
CLASS_NAMES = (*KEYWORDS, "silence", "unknown")
# The other 25 words of Speech Commands v0.02: the "unknown" class.
UNKNOWN_WORDS = ("backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four", "happy",
                 "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three", "tree", "two",
                 "visual", "wow", "zero")
# espeak-ng voices with English phonemes (accents) and its voice variants (timbre, sex, synthesiser).
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2",
            "klatt3", "croak")
SPEEDS_WPM = (130, 210)  # espeak-ng -s range (its default is 175 words per minute)
PITCHES = (20, 80)  # espeak-ng -p range (0..99, default 50)
NOISES = ("white", "pink", "brown", "hum")
SNRS_DB = (30, 20, 10, 5)
# Fixed [0, 1] ranges of the 10 MFCCs: the 0.5th / 99.5th percentiles of the default set
# (seed 0, 400 clips per class), rounded outwards; values outside are clipped.
MFCC_LO = np.array([-32, -6, -5, -9, -7, -5, -4, -3, -3, -3], dtype=np.float32)
MFCC_HI = np.array([16, 8, 9, 4, 5, 4, 4, 4, 3, 3], dtype=np.float32)
FORMAT = 2  # bump when the synthesis, the features or the file change: old cache files are then ignored


@dataclass(frozen=True)
class Clip:
    """How one clip is made (all drawn from the seed before any audio is synthesised)."""

    label: int
    word: str | None  # None for silence
    voice: str  # espeak-ng -v, e.g. "en-gb-x-rp+f3"
    speed: int
    pitch: int
    noise: str
    snr_db: float | None  # None for silence (noise only)
    level: float  # speech peak, or the noise RMS of a silence clip
    offset: float  # where the word starts, as a fraction of the free space in the clip


def plan(n_per_class: int = 400, seed: int = 0) -> list[Clip]:
    """The clips of the set, `n_per_class` per class, in class order.

    >>> clips = plan(2, seed=0)
    >>> len(clips), clips[0].word, clips[-1].label == CLASS_NAMES.index("unknown")
    (24, 'down', True)
    """
    rng = np.random.default_rng([seed, 1])
    clips = []
    for label, name in enumerate(CLASS_NAMES):
        for _ in range(n_per_class):
            word = None if name == "silence" else (rng.choice(UNKNOWN_WORDS) if name == "unknown" else name)
            variant = str(rng.choice(VARIANTS))
            voice = str(rng.choice(ACCENTS)) + (f"+{variant}" if variant else "")
            clips.append(Clip(
                label=label, word=None if word is None else str(word), voice=voice,
                speed=int(rng.integers(SPEEDS_WPM[0], SPEEDS_WPM[1] + 1)),
                pitch=int(rng.integers(PITCHES[0], PITCHES[1] + 1)), noise=str(rng.choice(NOISES)),
                snr_db=None if word is None else float(rng.choice(SNRS_DB)),
                level=float(np.exp(rng.uniform(np.log(1e-3), np.log(0.05)))) if word is None
                else float(rng.uniform(0.25, 0.9)),
                offset=float(rng.uniform()),
            ))
    return clips


def espeak_version() -> str:
    """espeak-ng's version line; raises InputError naming the package when it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise InputError("kws: synthesising the data set needs espeak-ng (Debian: apt-get install espeak-ng; "
                         "`make test` and `make demo` install it)")
    return subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of `word`, float32 in [-1, 1] at 16 kHz, leading and trailing silence cut."""
    from scipy.signal import resample_poly

    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    if not pcm:
        raise RuntimeError(f"espeak-ng -v {voice} produced no audio for {word!r}")
    x = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
    g = np.gcd(SAMPLE_RATE, rate)
    x = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    margin = SAMPLE_RATE // 100  # keep 10 ms around the voiced part
    return x[max(0, loud[0] - margin): loud[-1] + margin]


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: white, pink (1/f power), brown (1/f^2) or 50/60 Hz mains hum with harmonics.

    >>> x = noise("pink", 16000, np.random.default_rng(0))
    >>> x.shape, round(float(np.sqrt(np.mean(x ** 2))), 3)
    ((16000,), 1.0)
    """
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0, phase = rng.choice([50.0, 60.0]), rng.uniform(0, 2 * np.pi, 4)
        x = sum(np.sin(2 * np.pi * f0 * (k + 1) * t + phase[k]) / (k + 1) for k in range(4))
        x = x + 0.1 * rng.standard_normal(n)
    else:
        exponent = {"white": 0.0, "pink": 0.5, "brown": 1.0}[kind]  # amplitude ~ f^-exponent
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n)
        f[0] = f[1]
        x = np.fft.irfft(spectrum / f ** exponent, n)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def render(clip: Clip, rng: np.random.Generator) -> np.ndarray:
    """One 1 s clip, float32 (16000,): the spoken word (if any) at its level, offset and SNR."""
    n = SAMPLE_RATE
    bed = noise(clip.noise, n, rng)
    if clip.word is None:
        return np.clip(clip.level * bed, -1, 1)
    speech = speak(clip.word, clip.voice, clip.speed, clip.pitch)[:n]
    speech *= clip.level / np.abs(speech).max()
    start = int(clip.offset * (n - len(speech)))
    x = np.zeros(n, dtype=np.float32)
    x[start:start + len(speech)] = speech
    speech_rms = np.sqrt(np.mean(speech ** 2))  # over the word, not the whole second
    snr_db = clip.snr_db if clip.snr_db is not None else np.inf  # a word clip always has one; None: no noise
    return np.clip(x + bed * speech_rms * 10 ** (-snr_db / 20), -1, 1)


def waveforms(clips: list[Clip], seed: int = 0) -> np.ndarray:
    """(N, 16000) float32 waveforms of `clips`; clip i's noise comes from its own seeded stream,
    so the result does not depend on the order the worker threads finish in."""
    espeak_version()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:  # espeak-ng runs as subprocesses
        out = list(pool.map(lambda ic: render(ic[1], np.random.default_rng([seed, 1, ic[0]])),
                            enumerate(clips)))
    return np.stack(out)


def features(wav: np.ndarray, chunk: int = 128) -> np.ndarray:
    """(N, 1, 49, 10) float32 MFCCs of (N, 16000) waveforms, mapped to [0, 1] by the fixed ranges."""
    m = np.concatenate([mfcc(wav[i:i + chunk]) for i in range(0, len(wav), chunk)])
    return np.clip((m - MFCC_LO) / (MFCC_HI - MFCC_LO), 0, 1)[:, None].astype(np.float32)


def kws(n_per_class: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """The synthetic keyword-spotting set: x (N, 1, 49, 10) float32 in [0, 1], y (N,), the 12 class
    names and each clip's SNR as a label ("SNR 10 dB"; "silence" for noise-only clips).

    `n_per_class` clips of each class (default 400: 4,800 clips); cached after the first load.
    """
    if not isinstance(n_per_class, int) or n_per_class < 2:
        raise InputError(f"kws: n_per_class={n_per_class!r}: expected an integer >= 2")
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"kws: seed={seed!r}: expected an integer >= 0")
    from effai.fileio import cache_dir, write_atomic

    settings = {"format": FORMAT, "n_per_class": n_per_class, "seed": seed, "espeak": espeak_version()}
    path = cache_dir() / f"kws-{hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return f["x"], f["y"], list(CLASS_NAMES), f["snr"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache file (disk full, edited): synthesise again and replace it
    clips = plan(n_per_class, seed)
    x = features(waveforms(clips, seed))
    y = np.array([c.label for c in clips], dtype=np.int64)
    snr = np.array(["silence" if c.snr_db is None else f"SNR {c.snr_db:g} dB" for c in clips])
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y, snr=snr, clips=np.array([json.dumps(asdict(c)) for c in clips]))
    write_atomic(path, buf.getvalue())
    return x, y, list(CLASS_NAMES), snr
