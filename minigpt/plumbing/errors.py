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


# What a write error below the scripts tells the user to do ("cannot write in ...; choose another --out"). A script
# whose output is not chosen by --out sets its own for as long as it runs (the tests run many scripts in one process).
# A new thread starts from the default; no writer runs in one.
_OUTPUT_REMEDY = contextvars.ContextVar("output_remedy", default="choose another --out")


@contextlib.contextmanager
def output_argument(name: str, remedy: str | None = None) -> Iterator[None]:
    """Within it, write errors say `remedy`, by default "choose another NAME" (peft_convert.py's positional
    destination, coursework.grade's --csv) instead of "choose another --out"."""
    token = _OUTPUT_REMEDY.set(remedy or f"choose another {name}")
    try:
        yield
    finally:
        _OUTPUT_REMEDY.reset(token)


def first_few(names: list[str], shown: int = 3) -> str:
    """Names for a one-line message: the first `shown`, joined, and ", ..." when there are more."""
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def another_output() -> str:
    """The remedy for a write error: "choose another --out", or what output_argument() set."""
    return _OUTPUT_REMEDY.get()


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
