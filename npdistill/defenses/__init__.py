"""Defenses: defensive distillation (and, later, the defenses it is compared with)."""
from .distillation import defensive_distillation, distill, soft_labels

__all__ = ["defensive_distillation", "distill", "soft_labels"]
