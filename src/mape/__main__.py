import sys

from mape.cli import main

sys.exit(main())
