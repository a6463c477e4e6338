"""The review web app (``tvcaption serve``): search, play scenes with their descriptions, correct
captions. :func:`tvcaption.web.app.create_app` builds it; nothing is imported here, so that the
CLI loads Starlette only for ``serve``."""
