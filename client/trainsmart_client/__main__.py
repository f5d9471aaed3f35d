"""`python3 -m trainsmart_client wrap ... -- COMMAND`."""

import sys

from trainsmart_client.wrap_command import main

if __name__ == "__main__":
    sys.exit(main())
