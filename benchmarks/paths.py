"""Where the benchmarks find real data: the folder the tests read (``$NAO_WS_TEST_DATA``, by default
``../shared/data`` beside the repository; see README)."""
import os
from pathlib import Path

DATA = Path(os.environ.get("NAO_WS_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
