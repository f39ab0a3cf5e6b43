"""`python -m conformance.adapters.container [--prune]`: list (or remove) what runs left behind."""

from .cleanup import main

if __name__ == "__main__":
    raise SystemExit(main())
