"""Probes: one-off measurements of where DAX's time and fit go, cited by RESULTS.md's sections.

    dax_floor     DAX's cost beyond its queries on 224 x 224 photos (query phase, call size, rows per step)
    dax_cost      DAX's seconds per image against RISE's at equal N on the real-model cases
    dax_diagnose  why DAX failed on real models: the student's held-out fit and the mask in training
"""
