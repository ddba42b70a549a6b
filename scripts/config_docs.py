"""Write config/README.md from the schema (`--check`: exit 1 if the file is stale)."""

import argparse
import sys

from grokpath.config_reference import README_PATH, render_repository
from grokpath.io import write_text

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--check", action="store_true", help="only compare; exit 1 when config/README.md is stale")
args = parser.parse_args()
text = render_repository()
if args.check:
    current = README_PATH.read_text() if README_PATH.exists() else ""
    if current != text:
        sys.exit(f"{README_PATH} is stale: run python scripts/config_docs.py")
else:
    write_text(text, README_PATH)
