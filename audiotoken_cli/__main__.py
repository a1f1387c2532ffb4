"""``python -m audiotoken_cli`` runs the same app as the ``audiotoken`` command."""

from audiotoken_cli.cli import main

if __name__ == "__main__":
    main()
