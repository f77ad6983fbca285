"""audio/: explaining sound classifiers in time and frequency.

    import daxjax
    ax = daxjax.explain_audio(bb, waveforms, sample_rate, method="dax")
    ax.maps          # [B, frames] in [0, 1]
    ax.frame_times   # [frames] seconds (frame centres)

Modules: `spectrogram` (STFT / log-mel front end in JAX), `inputs` (checks on waveforms and the
sample rate), `fills` (what removed audio becomes),
`render` (masks on the spectrogram grid -> waveforms), `explain` (`explain_audio`),
`metrics` (intervals, 1-D IoU, deletion over time), `viz` (spectrogram and waveform overlays),
`report` (`write_audio_report`: the HTML report of clips).
"""

from daxjax.audio.explain import AudioConfig, AudioExplanation, explain_audio
from daxjax.audio.report import write_audio_report
from daxjax.audio.spectrogram import SpectrogramConfig, log_mel, stft

__all__ = ["AudioConfig", "AudioExplanation", "SpectrogramConfig", "explain_audio", "log_mel", "stft",
           "write_audio_report"]
