"""The only entry script: the binary and `python cmd/bmo/main.py` start here."""

from bmo.cli import main

if __name__ == "__main__":
    main()
