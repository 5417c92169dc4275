"""Defenses: defensive distillation and the defenses it is compared with
(adversarial training, input-gradient regularization, mutation-testing detection)."""
from .adversarial_training import AdversarialExamples, adversarial_training
from .distillation import defensive_distillation, distill, soft_labels
from .gradient_regularization import (InputGradientPenalty, gradient_regularization,
                                      penalty_and_gradient)
from .mutation_detection import Detection, MutationDetector, mutate

__all__ = ["AdversarialExamples", "Detection", "InputGradientPenalty", "MutationDetector",
           "adversarial_training", "defensive_distillation", "distill", "gradient_regularization",
           "mutate", "penalty_and_gradient", "soft_labels"]
