"""Encoder (ViT), predictor and position encodings."""
