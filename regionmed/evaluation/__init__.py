"""Model-agnostic evaluation: metrics on embeddings, heatmaps and boxes, the bootstrap, the gate.

Every function takes numpy arrays (or torch tensors, converted on the way in) and returns plain
Python / numpy values; only ``inference`` and ``stage`` load a model. Import the module you need
(``regionmed.evaluation.retrieval``...): this package re-exports nothing, so importing one metric
does not load the others.
"""
