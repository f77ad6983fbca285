"""Sound-event clips with exact time ground truth: the paper's ESC-10 protocol with open sounds.

The DAX paper pads each ESC-10 clip at both ends with noise of random duration at a fixed SNR,
so that the clip's own interval in the padded signal is the ground truth an explanation should
find (its noise durations and SNR were lost in extraction). Here the clips are real sounds from
Debian packages:

  * `sonic-pi-samples` (CC0, freesound.org): drums, tabla, drones, robot voices; the
    category is in each file name (`SOURCES`).
  * speech: `espeak-ng` (synthesised; `SPEECH_VOICES`, `SPEECH_WORDS`) and the recorded
    utterances of `pocketsphinx-testdata`.

A clip of `make_clips` (all from `numpy.random.default_rng([seed, split, i])`, so clip i is the
same whatever `count` is):
  1. class uniform over `CLASSES`; a source of that class and split (sources are split by file:
     train and test never share a recording, nor a speech voice or word);
  2. the event, EVENT_SECONDS long (uniform): percussive classes repeat hits of the source at
     random intervals (0.15-0.4 s) with random gains, sustained ones crop the source (looped if
     short), speech is one utterance (its length, up to the maximum); 10 ms fades at both ends;
  3. placed at a uniform offset in a CLIP_SECONDS signal with at least MIN_PAD_SECONDS before and
     after, over background noise (white, pink or brown, at random) that fills the whole signal at
     SNR_DB below the event's mean power over its interval;
  4. ground truth: the event's interval [offset, offset + duration) in seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
CLIP_SECONDS = 3.0
EVENT_SECONDS = (0.6, 1.4)
MIN_PAD_SECONDS = 0.3
SNR_DB = 10.0
FADE_SECONDS = 0.01
HIT_INTERVAL_SECONDS = (0.15, 0.4)

SONIC_PI_DIR = Path(os.environ.get("SONIC_PI_SAMPLES_DIR", "/usr/share/sonic-pi/samples"))
POCKETSPHINX_DIR = Path(os.environ.get("POCKETSPHINX_TESTDATA_DIR", "/usr/share/pocketsphinx/test/data"))

CLASSES = ("speech", "kick", "snare_cymbal", "tabla", "drone", "robot")
PERCUSSIVE = ("kick", "snare_cymbal", "tabla")

# Class -> sonic-pi sample names (file stems). Left out: loops (they mix kicks, snares and
# cymbals), noise-like swooshes (like the background), sounds of no clear class, and bells and
# electronic blips (drum_cowbell, elec_beep, elec_bell, elec_blip, elec_blip2, elec_bong,
# elec_chime, elec_ping, elec_plip, elec_triangle, elec_twang, perc_bell, perc_bell2): as a class
# of their own, 37-87 % of the held-out bell clips were recognised in three training runs, most
# of the rest called tabla.
SOURCES = {
    "kick": ["bd_808", "bd_ada", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_mehackit",
             "bd_pure", "bd_sone", "bd_tek", "bd_zome", "bd_zum", "drum_bass_hard", "drum_bass_soft",
             "drum_heavy_kick", "elec_hollow_kick", "elec_soft_kick"],
    # Snares and cymbals are one class: both are noisy hits, and a closed hi-hat ("pedal") or an
    # electronic cymbal sounds like a snare (with cymbals a class of their own, 50 % of the
    # held-out cymbal clips were called snares).
    "snare_cymbal": ["drum_cymbal_closed", "drum_cymbal_hard", "drum_cymbal_open", "drum_cymbal_pedal",
                     "drum_cymbal_soft", "drum_snare_hard", "drum_snare_soft", "drum_splash_hard",
                     "drum_splash_soft", "elec_cymbal", "elec_filt_snare", "elec_hi_snare", "elec_lo_snare",
                     "elec_mid_snare", "elec_snare", "perc_snap", "perc_snap2", "sn_dolf", "sn_dub",
                     "sn_generic", "sn_zome"],
    "tabla": ["tabla_dhec", "tabla_ghe1", "tabla_ghe2", "tabla_ghe3", "tabla_ghe4", "tabla_ghe5", "tabla_ghe6",
              "tabla_ghe7", "tabla_ghe8", "tabla_ke1", "tabla_ke2", "tabla_ke3", "tabla_na", "tabla_na_o",
              "tabla_na_s", "tabla_re", "tabla_tas1", "tabla_tas2", "tabla_tas3", "tabla_te1", "tabla_te2",
              "tabla_te_m", "tabla_te_ne", "tabla_tun1", "tabla_tun2", "tabla_tun3"],
    "drone": ["ambi_choir", "ambi_drone", "ambi_glass_hum", "ambi_glass_rub", "ambi_haunted_hum",
              "ambi_lunar_land", "ambi_piano", "ambi_sauna", "ambi_soft_buzz", "bass_dnb_f", "bass_drop_c",
              "bass_hard_c", "bass_hit_c", "bass_thick_c", "bass_trance_c", "bass_voxy_c", "bass_woodsy_c",
              "guit_e_fifths", "guit_e_slide", "guit_em9", "guit_harmonics"],
    "robot": ["glitch_robot1", "glitch_robot2", "mehackit_robot1", "mehackit_robot2", "mehackit_robot3",
              "mehackit_robot4", "mehackit_robot5", "mehackit_robot6", "mehackit_robot7"],
}
# Every 4th source of a class (sorted names, from the 4th on) is held out for the test split.
TEST_EVERY = 4

SPEECH_VOICES = {
    "train": [f"{base}+{variant}" for base in ("en-gb", "en-us", "en-gb-scotland", "en-029")
              for variant in ("m1", "m2", "m3", "f1", "f2")],
    "test": [f"{base}+{variant}" for base in ("en-gb-x-rp", "en-us", "en-gb-x-gbclan")
             for variant in ("m5", "m7", "f3", "f4")],
}
SPEECH_WORDS = {
    "train": ("apple river seven yellow window garden morning button silver rabbit engine paper "
              "orange candle forest little monday twenty pencil basket winter happy doctor purple "
              "market station number kitchen").split(),
    "test": ("banana mountain eleven whistle ocean pocket tiger thunder music yesterday blanket "
             "coffee wonder castle ninety sunday summer hello bottle rocket").split(),
}
# Recorded speech (pocketsphinx-testdata; 16 kHz): file -> split.
RECORDED_SPEECH = {
    "cards/001.wav": "train", "cards/002.wav": "train", "cards/003.wav": "train", "cards/004.wav": "test",
    "cards/005.wav": "test",
    "librivox/sense_and_sensibility_01_austen_64kb-0870.wav": "train",
    "librivox/sense_and_sensibility_01_austen_64kb-0880.wav": "train",
    "librivox/sense_and_sensibility_01_austen_64kb-0890.wav": "train",
    "librivox/sense_and_sensibility_01_austen_64kb-0920.wav": "test",
    "librivox/sense_and_sensibility_01_austen_64kb-0930.wav": "test",
    "goforward.raw": "train", "numbers.raw": "train", "something.raw": "test",
}
SPLITS = {"train": 0, "test": 1}
_SPEECH_PER_SPLIT = 120  # synthesised utterances per split


@dataclasses.dataclass
class Clips:
    """A set of padded clips.

    waveforms: float32 [n, S] at SAMPLE_RATE, S = CLIP_SECONDS * SAMPLE_RATE.
    labels: int64 [n], indices into CLASSES.
    intervals: float64 [n, 2], the event's (start, end) in seconds: the ground truth.
    sources: the recording (or speech utterance) each event came from.
    """

    waveforms: np.ndarray
    labels: np.ndarray
    intervals: np.ndarray
    sources: list

    def __len__(self) -> int:
        return len(self.labels)


def _missing(package: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(f"{path} not found: install Debian's {package} "
                             f"(apt-get install {package}; or run benchmarks/datasets/audio/setup.sh)")


def split_of(name: str, cls: str) -> str:
    """'train' or 'test' for a sonic-pi source of a class (every TEST_EVERY-th sorted name is test)."""
    index = sorted(SOURCES[cls]).index(name)
    return "test" if index % TEST_EVERY == TEST_EVERY - 1 else "train"


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    """x at `rate` Hz -> float32 at SAMPLE_RATE (polyphase, scipy)."""
    from math import gcd

    from scipy.signal import resample_poly

    if rate == SAMPLE_RATE:
        return x.astype(np.float32)
    g = gcd(rate, SAMPLE_RATE)
    return resample_poly(x, SAMPLE_RATE // g, rate // g).astype(np.float32)


def trim(x: np.ndarray, floor_db: float = -50.0) -> np.ndarray:
    """x without its leading and trailing stretches below floor_db of its peak, peak-normalised to 1."""
    peak = np.max(np.abs(x))
    if peak == 0:
        return x
    loud = np.flatnonzero(np.abs(x) > peak * 10 ** (floor_db / 20))
    return (x[loud[0]:loud[-1] + 1] / peak).astype(np.float32)


@functools.lru_cache(maxsize=None)
def sonic_pi_sound(name: str) -> np.ndarray:
    """A sonic-pi sample as mono float32 at SAMPLE_RATE, trimmed and peak-normalised."""
    import soundfile

    path = SONIC_PI_DIR / f"{name}.flac"
    if not path.is_file():
        raise _missing("sonic-pi-samples", path)
    x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return trim(resample(x.mean(axis=1), rate))


@functools.lru_cache(maxsize=None)
def recorded_speech(relative: str) -> np.ndarray:
    """A pocketsphinx-testdata recording as float32 at SAMPLE_RATE (".raw" files: 16 kHz s16le)."""
    path = POCKETSPHINX_DIR / relative
    if not path.is_file():
        raise _missing("pocketsphinx-testdata", path)
    if path.suffix == ".raw":
        return trim(np.fromfile(path, "<i2").astype(np.float32) / 32768.0)
    return trim(_read_wav(path))


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        frames = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0
        frames = frames.reshape(-1, f.getnchannels()).mean(axis=1)
        return resample(frames, f.getframerate())


@functools.lru_cache(maxsize=None)
def synthesised_speech(split: str) -> tuple:
    """_SPEECH_PER_SPLIT espeak-ng utterances of 1-3 words of the split's words and voices.

    Returns a tuple of (description, float32 waveform at SAMPLE_RATE). Deterministic.
    """
    rng = np.random.default_rng([7, SPLITS[split]])
    voices, words = SPEECH_VOICES[split], SPEECH_WORDS[split]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "u.wav"
        for _ in range(_SPEECH_PER_SPLIT):
            voice = voices[rng.integers(len(voices))]
            text = " ".join(words[i] for i in rng.choice(len(words), size=rng.integers(1, 4), replace=False))
            speed, pitch = int(rng.integers(130, 200)), int(rng.integers(25, 75))
            try:
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(target), text],
                               check=True, capture_output=True)
            except FileNotFoundError as err:
                raise _missing("espeak-ng", Path("espeak-ng")) from err
            out.append((f"espeak-ng {voice} s{speed} p{pitch}: {text}", trim(_read_wav(target))))
    return tuple(out)


def speech_sources(split: str) -> list:
    """(description, waveform) of every speech source of a split: synthesised, then recorded."""
    recorded = [(f"pocketsphinx {name}", recorded_speech(name)) for name, s in RECORDED_SPEECH.items() if s == split]
    return list(synthesised_speech(split)) + recorded


def _fade(x: np.ndarray) -> np.ndarray:
    n = min(int(FADE_SECONDS * SAMPLE_RATE), len(x) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


def _percussive(sound: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Hits of `sound` from t = 0 at random intervals, each cut at the end of the event."""
    out = np.zeros(length, np.float32)
    onset = 0
    while onset < length - int(0.05 * SAMPLE_RATE):
        hit = sound[:length - onset] * rng.uniform(0.5, 1.0)
        out[onset:onset + len(hit)] += hit
        onset += int(rng.uniform(*HIT_INTERVAL_SECONDS) * SAMPLE_RATE)
    return out


def _sustained(sound: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random `length`-sample stretch of `sound`, looped when the sound is shorter."""
    if len(sound) < length:
        sound = np.tile(sound, -(-length // len(sound)) + 1)
    start = int(rng.integers(0, len(sound) - length + 1))
    return sound[start:start + length]


def coloured_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power Gaussian noise, white, pink (1/f) or brown (1/f^2) at random."""
    exponent = rng.choice([0.0, 1.0, 2.0])
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1.0 / SAMPLE_RATE)
    spectrum *= 1.0 / np.maximum(freqs, 20.0) ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n=length)
    return (noise / np.sqrt(np.mean(noise ** 2))).astype(np.float32)


def make_clip(seed: int, split: str, index: int) -> tuple[np.ndarray, int, tuple[float, float], str]:
    """Clip `index` of (seed, split): (waveform [S], label, (start, end) seconds, source)."""
    rng = np.random.default_rng([seed, SPLITS[split], index])
    label = int(rng.integers(len(CLASSES)))
    cls = CLASSES[label]
    total = int(CLIP_SECONDS * SAMPLE_RATE)
    length = int(rng.uniform(*EVENT_SECONDS) * SAMPLE_RATE)
    if cls == "speech":
        sources = speech_sources(split)
        source, sound = sources[rng.integers(len(sources))]
        # An utterance shorter than the drawn duration is used whole (the event is then shorter).
        event = _sustained(sound, length, rng) if len(sound) > length else sound
        length = len(event)
    else:
        names = [n for n in SOURCES[cls] if split_of(n, cls) == split]
        source = names[rng.integers(len(names))]
        sound = sonic_pi_sound(source)
        event = (_percussive if cls in PERCUSSIVE else _sustained)(sound, length, rng)
    event = _fade(event.astype(np.float32))
    event_power = max(float(np.mean(event ** 2)), 1e-12)
    offset = int(rng.integers(int(MIN_PAD_SECONDS * SAMPLE_RATE), total - length - int(MIN_PAD_SECONDS * SAMPLE_RATE) + 1))
    noise = coloured_noise(total, rng) * np.sqrt(event_power * 10 ** (-SNR_DB / 10))
    signal = noise
    signal[offset:offset + length] += event
    signal *= rng.uniform(0.3, 0.9) / np.max(np.abs(signal))
    return signal.astype(np.float32), label, (offset / SAMPLE_RATE, (offset + length) / SAMPLE_RATE), source


def make_clips(count: int, seed: int = 0, split: str = "test") -> Clips:
    """`count` clips of a split ("train" or "test"), clip i from (seed, split, i)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    made = [make_clip(seed, split, i) for i in range(count)]
    return Clips(np.stack([m[0] for m in made]) if made else np.zeros((0, int(CLIP_SECONDS * SAMPLE_RATE)), np.float32),
                 np.array([m[1] for m in made], np.int64), np.array([m[2] for m in made], np.float64).reshape(-1, 2),
                 [m[3] for m in made])


def available() -> str | None:
    """None when every data source is installed, else a reason naming what is missing."""
    import shutil

    missing = []
    if not any(glob.glob(str(SONIC_PI_DIR / "*.flac"))):
        missing.append("sonic-pi-samples")
    if not (POCKETSPHINX_DIR / "goforward.raw").is_file():
        missing.append("pocketsphinx-testdata")
    if shutil.which("espeak-ng") is None:
        missing.append("espeak-ng")
    try:
        import soundfile  # noqa: F401
    except ImportError:
        missing.append("soundfile (pip)")
    return None if not missing else "missing " + ", ".join(missing) + ": run benchmarks/datasets/audio/setup.sh"
