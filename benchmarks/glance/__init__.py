"""GLANCE-lite on MorphoSynth.

    acceptance   fit the explainer to both committed classifiers, score it against the planted
                 ground truth (issue 7's figures; `--save-models` rewrites the committed models)
    smoothing    local effects from the code alone against averaged over codes around it
    step_time    milliseconds per surrogate training step (times an older checkout side by side)
"""
