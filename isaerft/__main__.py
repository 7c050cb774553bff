import sys

from isaerft.cli import main

sys.exit(main())
