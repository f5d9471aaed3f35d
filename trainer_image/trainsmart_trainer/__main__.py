"""`python -m trainsmart_trainer`: what the packaged image runs (see `cli`)."""

import sys

from trainsmart_trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
