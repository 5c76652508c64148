"""The command layer: what main.py hands off to, one function per --mode, one-line errors."""
