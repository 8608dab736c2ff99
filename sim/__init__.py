"""What the work costs: models of transformer inference built on :mod:`hwmodels`."""

from sim.model import MODELS, ModelConfig, get_model, load_model_config
from sim.layer_ops import step_operations

__all__ = ["MODELS", "ModelConfig", "get_model", "load_model_config", "step_operations"]
