"""Monitoring: the log of served embeddings that the drift stage reads."""
