"""`python -m bmo`: the same entry as the `bmo` console script."""

from bmo.cli import main

if __name__ == "__main__":
    main()
