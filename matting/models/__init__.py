"""The U^2-Net family: architectures, weight loading and the model registry."""

from .blocks import REBNCONV, RSU, RSU4F, fuse_batchnorm
from .registry import ModelSpec, available_models, create_model, get_spec, register
from .u2net import U2NET, U2NETP
from .weights import load_weights

__all__ = ["REBNCONV", "RSU", "RSU4F", "U2NET", "U2NETP", "ModelSpec", "available_models", "create_model",
           "fuse_batchnorm", "get_spec", "load_weights", "register"]
