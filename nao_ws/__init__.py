"""nao-ws: Neural Architecture Optimization on an ENAS-style weight-sharing supernet."""

__version__ = "0.1.0"
