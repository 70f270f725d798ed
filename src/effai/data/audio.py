"""Audio features: log-mel MFCCs as MLPerf Tiny's keyword-spotting front end computes them.

No installed package computes MFCCs (librosa, torchaudio and python_speech_features are not
dependencies), so the three steps are written here in numpy, with scipy's orthonormal DCT:

    frames of 40 ms every 20 ms, Hann window -> |rFFT| (1024 points at 16 kHz)
    -> 40 triangular mel bands (HTK mel scale, 20 Hz .. 4 kHz) -> log(mel + 1e-6)
    -> DCT-II (orthonormal) -> the first 10 coefficients

MLPerf Tiny's `get_dataset.py` does the same with `tf.signal` (magnitude STFT, 40 bands from
20 to 4000 Hz, log offset 1e-6, 10 MFCCs), so a 1 s clip at 16 kHz gives the (49, 10)
input DS-CNN expects.

>>> import numpy as np
>>> mfcc(np.zeros(16000, dtype=np.float32)).shape
(49, 10)
"""

from __future__ import annotations

import numpy as np
from scipy.fft import dct, rfft


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700).

    >>> round(float(hz_to_mel(1000.0)), 1)
    1000.0
    """
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = 40, n_fft: int = 1024, sample_rate: int = 16000,
                   f_min: float = 20.0, f_max: float = 4000.0) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters, equally spaced on the mel scale, each
    peaking at 1 at its centre frequency (as `tf.signal.linear_to_mel_weight_matrix`).

    >>> w = mel_filterbank()
    >>> w.shape, float(w.max()) <= 1.0, bool((w.sum(0) > 0).all())
    ((513, 40), True, True)
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)[:, None]  # (F,1)
    lo, centre, hi = edges[:-2], edges[1:-1], edges[2:]  # (n_mels,) each
    rising = (bins - lo) / (centre - lo)
    falling = (hi - bins) / (hi - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def frames(signal: np.ndarray, length: int, step: int) -> np.ndarray:
    """(n_frames, length) views of `signal` (..., T): no padding, as `tf.signal.frame`."""
    return np.lib.stride_tricks.sliding_window_view(signal, length, axis=-1)[..., ::step, :]


def mfcc(signal: np.ndarray, sample_rate: int = 16000, window_ms: float = 40.0, stride_ms: float = 20.0,
         n_mels: int = 40, n_mfcc: int = 10, f_min: float = 20.0, f_max: float = 4000.0) -> np.ndarray:
    """MFCCs of `signal` (T,) or a batch (N, T) of float waveforms: (..., n_frames, n_mfcc) float32."""
    x = np.asarray(signal, dtype=np.float32)
    length, step = int(round(sample_rate * window_ms / 1000)), int(round(sample_rate * stride_ms / 1000))
    if x.shape[-1] < length:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than one {length}-sample window")
    n_fft = 1 << (length - 1).bit_length()  # the smallest power of two holding a window, as tf.signal.stft
    window = np.hanning(length + 1)[:-1].astype(np.float32)  # periodic Hann
    spectrum = np.abs(rfft(frames(x, length, step) * window, n=n_fft, axis=-1))  # (..., frames, F)
    mel = spectrum @ mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)  # (..., frames, n_mels)
    return dct(np.log(mel + 1e-6), type=2, norm="ortho", axis=-1)[..., :n_mfcc].astype(np.float32)
