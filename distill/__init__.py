"""CrisisLens training stage: data layer, the baseline, the teacher and the distilled student.

Stands on `crisislens.runtime`; may import torch, transformers and scikit-learn.
"""
