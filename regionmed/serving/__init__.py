"""Serving: the BentoML service (``service.py``), its request checks and settings, and packaging
(the engine and the retrieval index it serves are in ``regionmed.inference``).

Importing this package imports no BentoML; ``regionmed.serving.service`` does.
"""
