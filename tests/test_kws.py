"""The synthetic keyword-spotting data set (espeak-ng speech, MFCC features) and DS-CNN on it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.fft import idct

from effai import data
from effai.data import audio, kws
from effai.results import fmt_bytes, fmt_ms

ROOT = Path(__file__).resolve().parents[1]
SMALL = "kws:n_per_class=30"  # 360 clips: a few seconds to synthesise


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache folder, so the tests synthesise (and never read a user's cached set)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: run `bash scripts/ensure-debian-packages.sh espeak-ng` (as root)")
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EFFAI_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def small(cache):
    return data.load(SMALL, seed=0)


# ---------------------------------------------------------------- MFCC
def _log_mel(x, **kw):
    """The log-mel energies behind the MFCCs: with all 40 coefficients the orthonormal DCT inverts."""
    return idct(audio.mfcc(x, n_mfcc=40, **kw), type=2, norm="ortho", axis=-1)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0])
def test_a_pure_tone_lands_in_the_mel_band_centred_on_it(freq):
    t = np.arange(16000) / 16000
    band_energy = _log_mel(np.sin(2 * np.pi * freq * t).astype(np.float32)).mean(0)  # (40,)
    centres = audio.mel_to_hz(np.linspace(audio.hz_to_mel(20.0), audio.hz_to_mel(4000.0), 42))[1:-1]
    assert int(np.argmax(band_energy)) == int(np.argmin(np.abs(centres - freq)))


def test_mfcc_shape_is_ds_cnn_input_and_a_short_signal_is_refused():
    assert audio.mfcc(np.zeros(16000, np.float32)).shape == (49, 10)
    assert audio.mfcc(np.zeros((3, 16000), np.float32)).shape == (3, 49, 10)
    with pytest.raises(ValueError, match="shorter than one 640-sample window"):
        audio.mfcc(np.zeros(100, np.float32))


def test_mfcc_dct_is_orthonormal_so_loudness_moves_only_c0():
    """log(a * mel) = log(a) + log(mel): with an orthonormal DCT-II a gain adds log(a) * sqrt(40) to
    c0 and leaves every other coefficient alone (the 1e-6 floor is negligible for a loud signal)."""
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    a, b = audio.mfcc(x), audio.mfcc(4 * x)
    np.testing.assert_allclose(b[:, 0] - a[:, 0], np.log(4) * np.sqrt(40), rtol=1e-4)
    np.testing.assert_allclose(b[:, 1:], a[:, 1:], atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(_log_mel(x), axis=-1), np.linalg.norm(audio.mfcc(x, n_mfcc=40), axis=-1),
                               rtol=1e-5)


def test_mel_filters_are_triangles_that_sum_to_one_between_the_first_and_last_centre():
    w = audio.mel_filterbank()  # (513, 40)
    hz = np.linspace(0, 8000, 513)
    centres = audio.mel_to_hz(np.linspace(audio.hz_to_mel(20.0), audio.hz_to_mel(4000.0), 42))[1:-1]
    inside = (hz >= centres[0]) & (hz <= centres[-1])
    np.testing.assert_allclose(w[inside].sum(1), 1.0, atol=1e-5)
    assert (w[hz > 4000] == 0).all() and (w[hz < 20] == 0).all()


# ---------------------------------------------------------------- the data set
def test_kws_shape_dtype_labels(small):
    x, y = small.train.tensors
    assert small.name == SMALL and small.input_shape == (1, 49, 10) and x.dtype == torch.float32
    assert small.class_names == ["down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes",
                                 "silence", "unknown"]
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    all_y = torch.cat([small.train.tensors[1], small.val.tensors[1], small.test.tensors[1]])
    assert all_y.dtype == torch.int64 and torch.bincount(all_y, minlength=12).tolist() == [30] * 12
    # the SNR of each test clip travels with the split, for the study's per-subgroup accuracy
    snr, test_y = small.meta["slices"], small.test.tensors[1].tolist()
    assert small.meta["slices_name"] == "SNR of the mixed noise" and len(snr) == len(test_y)
    assert all((s == "silence") == (c == 10) for s, c in zip(snr, test_y, strict=True))
    assert set(snr) - {"silence"} <= {f"SNR {d} dB" for d in kws.SNRS_DB}


def test_kws_is_deterministic_cached_and_seeded(cache, small, tmp_path, monkeypatch):
    """Two syntheses into empty caches give the same set bit for bit; another synthesis seed
    gives other clips; the cached file holds the set and a second load reads it back."""
    runs = []
    for sub in ("a", "a2", "b"):
        monkeypatch.setenv("EFFAI_CACHE_DIR", str(tmp_path / sub))
        runs.append(kws.kws(n_per_class=3, seed=1 if sub == "b" else 0))
        assert len(list((tmp_path / sub).glob("kws-*.npz"))) == 1
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert not np.array_equal(runs[0][0], runs[2][0])
    monkeypatch.setenv("EFFAI_CACHE_DIR", str(cache))
    (file,) = cache.glob("kws-*.npz")
    again = data.load(SMALL, seed=0)
    with np.load(file) as f:
        assert len(f["y"]) == 360 and len(f["clips"]) == 360
    assert again.test.tensors[0].equal(small.test.tensors[0])


def test_kws_plan_draws_voices_words_and_snrs():
    clips = kws.plan(60, seed=0)
    unknown = [c for c in clips if c.label == kws.CLASS_NAMES.index("unknown")]
    silence = [c for c in clips if c.label == kws.CLASS_NAMES.index("silence")]
    assert {c.word for c in unknown} <= set(kws.UNKNOWN_WORDS) and len({c.word for c in unknown}) > 15
    assert all(c.word is None and c.snr_db is None for c in silence)
    words = [c for c in clips if c.word is not None]
    assert len({c.voice for c in words}) > 50 and {c.snr_db for c in words} == set(kws.SNRS_DB)
    assert all(kws.SPEEDS_WPM[0] <= c.speed <= kws.SPEEDS_WPM[1] for c in words)


def test_noise_colours_and_the_mixed_snr():
    rng = np.random.default_rng(0)
    power = {k: np.abs(np.fft.rfft(kws.noise(k, 16000, rng))) ** 2 for k in kws.NOISES}
    low, high = slice(10, 500), slice(4000, 8000)  # 10-500 Hz vs 4-8 kHz
    ratio = {k: p[low].mean() / p[high].mean() for k, p in power.items()}
    assert 0.5 < ratio["white"] < 2 and ratio["brown"] > ratio["pink"] > 10 * ratio["white"]
    clip = kws.Clip(label=0, word="down", voice="en-us", speed=175, pitch=50, noise="white", snr_db=10.0,
                    level=0.5, offset=0.5)
    x = kws.render(clip, np.random.default_rng(1))
    speech = kws.speak("down", "en-us", 175, 50)
    start = int(0.5 * (16000 - len(speech)))
    bed = np.r_[x[:start], x[start + len(speech):]]
    word_rms = np.sqrt(np.mean((0.5 * speech / np.abs(speech).max()) ** 2))
    assert 20 * np.log10(word_rms / np.sqrt(np.mean(bed ** 2))) == pytest.approx(10.0, abs=1.0)


def test_missing_espeak_is_one_clear_input_error(monkeypatch):
    from effai.errors import InputError

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="needs espeak-ng"):
        kws.espeak_version()


def test_bad_options_in_the_name_are_input_errors(cache):
    from effai.errors import InputError

    with pytest.raises(InputError, match="unexpected keyword argument 'bogus'"):
        data.load("kws:bogus=1")
    with pytest.raises(InputError, match="name=value"):
        data.load("kws:n_per_class")
    with pytest.raises(InputError, match="n_per_class=1"):
        data.load("kws:n_per_class=1")
    with pytest.raises(InputError, match="seed='x'"):
        data.load("kws:synth_seed=x")


def test_a_damaged_cache_file_is_synthesised_again(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFAI_CACHE_DIR", str(tmp_path))
    x, y, _, _ = kws.kws(n_per_class=2)
    (file,) = tmp_path.glob("kws-*.npz")
    file.write_bytes(file.read_bytes()[:100])
    x2, y2, _, _ = kws.kws(n_per_class=2)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    with np.load(file) as f:
        assert len(f["y"]) == 24


def test_make_installs_espeak_ng_idempotently(cache):
    """The bootstrap's Debian packages include espeak-ng; installed (the fixture checks it), the
    install script then does nothing, quietly."""
    r = subprocess.run(["bash", str(ROOT / "scripts/ensure-debian-packages.sh"), "espeak-ng"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    line = next(ln for ln in (ROOT / "Makefile").read_text().splitlines() if ln.startswith("DEBIAN_PACKAGES"))
    assert "espeak-ng" in line.split()


# ---------------------------------------------------------------- DS-CNN on it
@pytest.mark.slow
def test_ds_cnn_learns_the_small_set_far_above_chance(small):
    """Half-width DS-CNN on 288 training clips. Batch 8 gives enough steps (432) for the
    Keras-momentum (0.99) BatchNorm statistics to settle; the full set reaches ~96%."""
    from effai import zoo
    from effai.train import TrainConfig, fit

    torch.manual_seed(0)
    net = zoo.create("ds_cnn", **zoo.options_for("ds_cnn", small, width_mult=0.5))
    r = fit(net, small, TrainConfig(epochs=12, lr=1e-2, batch_size=8, seed=0), progress=False)
    assert r.val_accuracy > 0.3 and r.test_accuracy > 0.3  # chance is 1/12


@pytest.mark.slow
def test_cli_trains_ds_cnn_on_kws(cache, tmp_path):
    env = {**os.environ, "EFFAI_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "effai.cli", "train", "ds_cnn", "--dataset", SMALL, "--epochs", "1",
           "--out", str(tmp_path), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    assert 0 <= json.loads(r.stdout)["test_accuracy"] <= 1
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["arch"] == "ds_cnn" and meta["input_shape"] == [1, 49, 10] and meta["dataset"] == SMALL
    bad = subprocess.run([*cmd[:5], "kws:n_per_class=x=1", *cmd[6:]], capture_output=True, text=True, timeout=300,
                         env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_study_fits_ds_cnn_on_nano33ble_as_an_estimate_and_slices_by_snr(small):
    """The study's target-fit step on the KWS model from its profile alone (no model to build
    firmware from) is labelled an estimate; its test subgroups are the data set's SNRs."""
    import effai
    from effai import zoo
    from effai.study import StudyConfig, measure, runner

    prof = effai.profile(zoo.create("ds_cnn"), input_shape=(1, 1, 49, 10), latency=False)
    rec = measure.targets(prof, "int8", ["nano33ble"])["nano33ble"]
    assert rec.method == "estimated" and rec.fits is True and rec.dtype == "int8"
    assert rec.latency_ms > 0
    assert runner._slices(StudyConfig(dataset=SMALL), small) == small.meta["slices"]


def _mcu_table(html: str) -> str:
    """The report's microcontroller table (flash, SRAM, latency and how they were got)."""
    assert 'id="mcu-table"' in html
    return html.split('id="mcu-table"', 1)[1].split("</table>", 1)[0]


def test_kws_study_reports_the_ds_cnn_firmware_for_nano33ble(cache, tmp_path):
    """The keyword-spotting study end to end: the int8 DS-CNN's nano33ble numbers are the built
    firmware's (sizes from the ELF, bit-exact in QEMU), shown in the report as such."""
    from effai.mcu import DeployResult

    env = {**os.environ, "EFFAI_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "effai.cli", "study", "--dataset", SMALL, "--model", "ds_cnn", "--target", "nano33ble",
           "--quick", "--variants", "fp32,int8_ptq", "--out", str(tmp_path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    fits = {v["name"]: v["targets"]["nano33ble"] for v in result["variants"]}
    fw = DeployResult.load(tmp_path / "firmware" / "int8_ptq" / "nano33ble" / "deploy.json")
    got = fits["int8_ptq"]
    assert got["method"] == "built and run in QEMU" and got["bit_exact"] is True and fw.bit_exact
    assert (got["flash_bytes"], got["sram_bytes"], got["latency_ms"]) == (fw.flash_bytes, fw.sram_bytes,
                                                                       fw.estimated_latency_ms)
    assert got["fits"] is fw.fits is True and fw.inputs_checked == 4 and "instructions counted in QEMU" in got["latency_method"]
    assert fits["fp32"]["method"] == "estimated"  # no int8 firmware for the float model
    table = _mcu_table((tmp_path / "report.html").read_text())
    row = next(t for t in table.split("<tr>") if "int8_ptq" in t and ">nano33ble<" in t)
    assert "built and run in QEMU" in row
    for value in (fmt_bytes(fw.flash_bytes), fmt_bytes(fw.sram_bytes), fmt_ms(fw.estimated_latency_ms)):
        assert f">{value}<" in row, (value, row)


def test_without_the_toolchain_the_study_reports_mcu_numbers_as_estimated(small, tmp_path, monkeypatch):
    """No Arm toolchain: the int8 variant's microcontroller numbers are the profile's estimate,
    and the report says "estimated"."""
    from effai import mcu
    from effai.study import StudyConfig, runner

    monkeypatch.setattr(mcu, "toolchain_missing", lambda: "arm-none-eabi-gcc")
    cfg = StudyConfig(dataset=SMALL, model="ds_cnn", target="nano33ble", quick=True, variants=("int8_ptq",),
                      out=str(tmp_path))
    res = runner.run(cfg)
    got = next(v for v in res.variants if v.name == "int8_ptq").targets["nano33ble"]
    assert got.method == "estimated" and got.bit_exact is None and got.flash_bytes and got.sram_bytes
    assert not (tmp_path / "firmware").exists()
    row = next(t for t in _mcu_table((tmp_path / "report.html").read_text()).split("<tr>") if "int8_ptq" in t
               and ">nano33ble<" in t)
    assert ">estimated<" in row and "QEMU" not in row and f">{fmt_bytes(got.flash_bytes)}<" in row
