"""daxjax: distillation-aided explanations (DAX) of query-only black boxes, batched in JAX.

    import daxjax
    ex = daxjax.explain(bb, images, method="dax")   # ex.maps [B, H, W] in [0, 1]
    ax = daxjax.explain_audio(bb, waveforms, sample_rate)   # ax.maps [B, frames], ax.frame_times
    daxjax.write_audio_report("out", waveforms, sample_rate, {"DAX": ax})   # -> out/report.html
"""

from daxjax import metrics
from daxjax.audio import AudioConfig, AudioExplanation, SpectrogramConfig, explain_audio, write_audio_report
from daxjax.methods.dax.config import DAXConfig
from daxjax.device.execution import Execution
from daxjax.explain import METHODS, Explanation, explain
from daxjax.methods.gradients import GradientConfig, InputXGradientConfig, IntegratedGradientsConfig, SmoothGradConfig
from daxjax.inputs import InputError
from daxjax.methods.kernelshap import KernelSHAPConfig
from daxjax.methods.base import UninformativeWarning
from daxjax.methods.lime import LIMEConfig
from daxjax.methods.occlusion import OcclusionConfig
from daxjax.dataset.pipeline import RunSummary, explain_dataset
from daxjax.report import write_report, write_store_report
from daxjax.methods.rise import RISEConfig
from daxjax.dataset.store import Results, load_results

__all__ = ["AudioConfig", "AudioExplanation", "DAXConfig", "Execution", "Explanation", "GradientConfig", "InputError",
           "InputXGradientConfig", "IntegratedGradientsConfig", "KernelSHAPConfig", "LIMEConfig", "METHODS",
           "OcclusionConfig", "RISEConfig", "Results", "RunSummary", "SmoothGradConfig", "SpectrogramConfig",
           "UninformativeWarning", "explain",
           "explain_audio", "explain_dataset", "load_results", "metrics", "write_audio_report", "write_report",
           "write_store_report"]

#: Modules that moved into the folders (`daxjax.device`, `.perturbation`, `.methods`, `.dataset`,
#: `.report`); `daxjax.<old name>` still gives the module (see the one-line files of those names).
_MOVED = ("budget", "config", "dax", "engine", "fills", "gradients", "kernelshap", "lime", "losses", "maps", "nets",
          "occlusion", "pipeline", "querying", "rise", "sampling", "segmentation", "segments", "sharding", "sources",
          "store", "viz")


def __getattr__(name: str):
    """`daxjax.dax`, `daxjax.querying`, ... (the former flat modules) and `daxjax.blackbox`, imported when used."""
    if name in _MOVED or name == "blackbox":
        import importlib

        return importlib.import_module(f"daxjax.{name}")
    raise AttributeError(f"module 'daxjax' has no attribute {name!r}")
