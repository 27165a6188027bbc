"""The named variants the supernets implement, declared once and free of torch, so that the command line can
list them without loading the networks: what a step does to weights off the sampled path (``optim``), how BN
normalises while an architecture is scored (``cnn.score``), and what the recurrent cell outputs (``rnn``)."""

UNSAMPLED = ("skip", "decay")  # weights off a step's path: left alone, or decayed with momentum (optim.zero_grads)
SCORE_BN = ("batch", "recalibrate")  # BN while scoring: the scoring batch's statistics, or re-measured (cnn.score)
CELL_OUTPUTS = ("loose", "all")  # the mean of the loose ends (ENAS) or of nodes 1..11 (ref-TF's final cell)
