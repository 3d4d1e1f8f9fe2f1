import sys

from prorank.cli import main

sys.exit(main())
