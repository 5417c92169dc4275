"""Adversarial attacks: each a function returning an AttackResult."""
from .jsma import jsma, jsma_all_targets
from .result import AttackResult

__all__ = ["AttackResult", "jsma", "jsma_all_targets"]
