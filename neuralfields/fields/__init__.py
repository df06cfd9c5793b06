"""Encodings, MLPs and the fields built from them."""
