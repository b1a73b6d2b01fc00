"""Model families, one module each, and the registry that names them."""

from scratchlm.models.base import LanguageModel, detach_state, lm_loss
from scratchlm.models.registry import REGISTRY, ModelSpec, get_spec

__all__ = ["REGISTRY", "LanguageModel", "ModelSpec", "detach_state", "get_spec", "lm_loss"]
