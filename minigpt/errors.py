"""User-facing errors: one clear line, exit status 2, no traceback.

Every mistake a user can make (a missing file, a bad flag value, an adapter for
another base model) is raised as a `UserError` whose message names the problem
and the fix. The scripts wrap their `main` in `run_cli`, which prints that one
line and exits with status 2. Genuine bugs still raise normal tracebacks.
"""

import sys
from typing import Callable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


def run_cli(main: Callable[[], None]) -> None:
    """Run a script's main function, turning a UserError into one line and exit 2."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        # Outputs are written atomically, so stopping early leaves no half-written file.
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)
