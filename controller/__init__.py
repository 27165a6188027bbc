"""The NAO controller: encoder, performance predictor and decoder over token sequences (reference §2)."""
