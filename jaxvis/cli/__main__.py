import sys

from jaxvis.cli import main

sys.exit(main())
