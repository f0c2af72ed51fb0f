"""Serving: the BentoML service (``service.py``), its engine, the retrieval index and packaging.

Importing this package imports no BentoML; ``regionmed.serving.service`` does.
"""
