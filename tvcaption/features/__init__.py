"""Frame features: ImageNet CNN backbones, the global descriptor e(V), labels, training cache.

Importing this package imports torch (through the backbones); ``tvcaption --help`` and
``tvcaption search`` must not import it.
"""

from tvcaption.features.backbones import (
    BACKBONES,
    Backbone,
    extract,
    load_backbone,
    register_backbone,
    resolve_device,
)
from tvcaption.features.cache import CacheKey, FeatureCache, build_cache, remove_stale
from tvcaption.features.descriptor import (
    DESCRIPTORS,
    descriptor_dim,
    global_descriptor,
    register_descriptor,
)
from tvcaption.features.labels import imagenet_labels, top_labels

__all__ = [
    "BACKBONES", "Backbone", "CacheKey", "DESCRIPTORS", "FeatureCache", "build_cache",
    "descriptor_dim", "extract", "global_descriptor", "imagenet_labels", "load_backbone",
    "register_backbone", "register_descriptor", "remove_stale", "resolve_device", "top_labels",
]
