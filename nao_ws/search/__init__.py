"""Searches: a strategy (``strategies``) proposes architectures, a score source (``sources``) scores them, and
one driver (``driver``) runs the rounds and writes the run folder. ``options`` holds the command's options and
presets; ``scoring`` scores any architectures with the inherited weights of a finished or interrupted search."""
