"""Data layer: annotations, features, windows, synthetic data."""
