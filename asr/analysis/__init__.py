"""Analyses of a trained model's behaviour, kept apart from training and decoding."""
