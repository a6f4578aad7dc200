"""A user's mistake as one line: UserError, and run_cli, which turns it into `error: ...` and exit status 2.

Every script runs its main() through run_cli, so a mistake the user can fix ends in
one line that names the fix, never a traceback. Nothing here is about GPTs or LoRA.
"""

import contextlib
import contextvars
import signal
import sys
from typing import Callable, Iterator


EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


# The argument through which a script's user chooses where it writes. The write errors of the plumbing
# ("cannot write in ...; choose another --out") name it, so a script whose output is not --out says so.
_OUTPUT_ARGUMENT = contextvars.ContextVar("output_argument", default="--out")


@contextlib.contextmanager
def output_argument(name: str) -> Iterator[None]:
    """Within it, write errors tell the user to choose another `name` (peft_convert.py's positional
    destination, compare.py's --results) instead of --out."""
    token = _OUTPUT_ARGUMENT.set(name)
    try:
        yield
    finally:
        _OUTPUT_ARGUMENT.reset(token)


def another_output() -> str:
    """'choose another --out', or the argument output_argument() named."""
    return f"choose another {_OUTPUT_ARGUMENT.get()}"


def run_cli(main: Callable[[], None], user_errors: tuple[type[BaseException], ...] = ()) -> None:
    """Run a script's main(); a UserError (or one of `user_errors`) becomes one line on stderr and exit 2.

    Once main() has ended, its outcome is decided and written, so Ctrl-C is ignored from then on: one pressed
    while the interpreter shuts down would otherwise kill a finished run by the signal (status -2, no message).
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the scripts' quiet start-up handler hands over to this one
    try:
        _run(main, user_errors)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(main: Callable[[], None], user_errors: tuple[type[BaseException], ...]) -> None:
    try:
        main()
    except (UserError, *user_errors) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except NotImplementedError as error:  # a coursework starter with a TODO still open
        print(f"error: {error or 'not implemented yet'}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        # Outputs are written atomically, so stopping early leaves no half-written file.
        print("interrupted: nothing half-written was left behind", file=sys.stderr)
        sys.exit(130)
