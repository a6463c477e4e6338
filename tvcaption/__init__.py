"""tvcaption: scene captions for TV archives with L-STAP (Francis & Huet, AI4TV 2019)."""

__version__ = "0.1.0"
