"""The model shipped with tvcaption (package data: ``tvcaption.resources.models``; see MODEL_CARD.md)."""
