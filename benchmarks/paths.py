"""Where the benchmarks find real data: the folder the tests read (``$NAO_WS_TEST_DATA``, by default the one
README's "Real data for the tests and benchmarks" names)."""
import os
from pathlib import Path

DATA = Path(os.environ.get("NAO_WS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
