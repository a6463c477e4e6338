"""Scene analysers: each one a module here (or anywhere, named ``module:Class``) and one line in
:data:`REGISTRY`. ``[index] analysers`` chooses which run; see :mod:`tvcaption.analysers.base`
for the interface and ``docs/CONTRACT.md`` for how to add one."""

from __future__ import annotations

from importlib import import_module

from tvcaption.analysers.base import Analyser, AnalyserContext, SceneInput
from tvcaption.errors import ConfigError

# name -> "module:Class", imported only when the analyser is used
REGISTRY: dict[str, str] = {
    "caption": "tvcaption.analysers.caption:CaptionAnalyser",
    "tags": "tvcaption.analysers.tags:TagsAnalyser",
    "text": "tvcaption.analysers.text:TextAnalyser",
    "speech": "tvcaption.analysers.speech:SpeechAnalyser",
    "meaning": "tvcaption.analysers.meaning:MeaningAnalyser",  # after the others: embeds what they said
}

__all__ = ["Analyser", "AnalyserContext", "SceneInput", "REGISTRY", "analyser_class", "load_analysers"]


def analyser_class(name: str) -> type[Analyser]:
    """The class for a registry name or a ``package.module:Class`` path."""
    target = REGISTRY.get(name, name)
    module, _, cls = target.partition(":")
    if not cls:
        raise ConfigError(f"[index] analysers: unknown analyser {name!r}; use one of {', '.join(REGISTRY)} "
                          "or a 'package.module:Class' path")
    try:
        found = getattr(import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"[index] analysers: cannot load {name!r} ({exc}); check the name") from None
    if not (isinstance(found, type) and issubclass(found, Analyser)):
        raise ConfigError(f"[index] analysers: {name!r} is not an Analyser subclass")
    return found


def load_analysers(names, context: AnalyserContext) -> list[Analyser]:
    if not names:
        raise ConfigError("[index] analysers is empty; name at least one (e.g. caption, tags)")
    return [analyser_class(name)(context) for name in names]
