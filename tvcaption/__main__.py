"""`python -m tvcaption` runs the command line, like the `tvcaption` script."""

from tvcaption.cli import app

if __name__ == "__main__":
    app(prog_name="tvcaption")
