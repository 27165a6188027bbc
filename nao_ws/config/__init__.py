"""Options declared once (``options``) and the paper's training recipes (``recipes``); free of torch, so the
command line reads them to answer ``--help`` at once."""
