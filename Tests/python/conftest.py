import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# In CI (CI=true) hypothesis draws the same examples every run, so a landing never depends on luck;
# locally each run explores new ones (and replays any failure from its example database).
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_terminal_summary(terminalreporter):
    common = sys.modules.get("common")
    if common is None or not common.WORST:
        return
    tr = terminalreporter
    tr.write_sep("-", "worst relative max-norm errors vs the numpy brute force (float64 sums)")
    for (op, dtype, path, kind), err in sorted(common.WORST.items()):
        tr.write_line("  %-5s %-8s %-10s %-10s %.2e" % (op, dtype, path, kind, err))
