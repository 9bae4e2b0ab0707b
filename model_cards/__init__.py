"""Model-card templates for averaged models, shipped with the package as ``hf_swa.model_cards``.

The files here are Jinja2 templates rendered by :mod:`hf_swa.hub.card`; read them with
``importlib.resources.files("hf_swa.model_cards")``.
"""
