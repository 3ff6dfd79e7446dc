import os
import tempfile
from pathlib import Path

# Tests never touch the user's data folder: everything lives in a throwaway one.
os.environ.setdefault("RISK_DATA_DIR", tempfile.mkdtemp(prefix="risk-test-data-"))
os.environ.setdefault("DAGSTER_HOME", str(Path(os.environ["RISK_DATA_DIR"]) / "dagster_home"))
Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)
# Small populations keep pipeline tests quick; the generator's scale is benchmarked separately.
os.environ.setdefault("RISK_CUSTOMERS", "800")
