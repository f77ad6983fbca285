"""daxjax: distillation-aided explanations (DAX) of query-only black boxes, batched in JAX.

    import daxjax
    ex = daxjax.explain(bb, images, method="dax")   # ex.maps [B, H, W] in [0, 1]
    ax = daxjax.explain_audio(bb, waveforms, sample_rate)   # ax.maps [B, frames], ax.frame_times
    daxjax.write_audio_report("out", waveforms, sample_rate, {"DAX": ax})   # -> out/report.html
"""

from daxjax import metrics
from daxjax.audio import AudioConfig, AudioExplanation, SpectrogramConfig, explain_audio, write_audio_report
from daxjax.config import DAXConfig
from daxjax.explain import METHODS, Explanation, explain
from daxjax.gradients import GradientConfig, InputXGradientConfig, IntegratedGradientsConfig, SmoothGradConfig
from daxjax.inputs import InputError
from daxjax.kernelshap import KernelSHAPConfig
from daxjax.lime import LIMEConfig
from daxjax.occlusion import OcclusionConfig
from daxjax.pipeline import RunSummary, explain_dataset
from daxjax.report import write_report, write_store_report
from daxjax.rise import RISEConfig
from daxjax.store import Results, load_results

__all__ = ["AudioConfig", "AudioExplanation", "DAXConfig", "Explanation", "GradientConfig", "InputError",
           "InputXGradientConfig", "IntegratedGradientsConfig", "KernelSHAPConfig", "LIMEConfig", "METHODS",
           "OcclusionConfig", "RISEConfig", "Results", "RunSummary", "SmoothGradConfig", "SpectrogramConfig", "explain",
           "explain_audio", "explain_dataset", "load_results", "metrics", "write_audio_report", "write_report",
           "write_store_report"]
