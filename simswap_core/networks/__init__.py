"""Network definitions: the SimSwap generator and the ArcFace identity encoder (official state_dict keys)."""
from .arcface import ArcFaceConfig, IRBlock, IResNet, SqueezeExcite
from .generator import GeneratorConfig, IdInjectionBlock, SimSwapGenerator, StyleModulation, instance_norm

__all__ = [
    "ArcFaceConfig", "IResNet", "IRBlock", "SqueezeExcite",
    "GeneratorConfig", "IdInjectionBlock", "SimSwapGenerator", "StyleModulation", "instance_norm",
]
