"""``python -m sluice module:app`` runs a native (or --interface asgi/wsgi) app."""
import sys

from .cli import main

sys.exit(main())
