import sys

from vjpcheck._cli import main

sys.exit(main())
