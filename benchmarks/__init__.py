"""Benchmarks, one folder per question; run each as `python -m benchmarks.<folder>.<name>`.

    quality/     do the maps find what the black box uses? (real models, Fashion scenes, photos, audio,
                 amortised DAX; DAX's ablation and map rule)
    throughput/  how fast against the black box's own speed, on CPUs, devices and GPUs
    glance/      GLANCE-lite on MorphoSynth: acceptance figures, smoothing, step time
    probes/      one-off measurements of where DAX's time and fit go
    datasets/    the scenes, clips and cases the benchmarks run on, and the black boxes trained on them
    results.py   RESULTS.md's sections and index (each benchmark rewrites only its own section)
"""
