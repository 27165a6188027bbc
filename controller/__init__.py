"""The NAO controller: encoder, performance predictor and decoder over token sequences (SPEC 2)."""
