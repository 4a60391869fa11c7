"""The `jaxvis` command line: one module per group of commands.

    jaxvis models | layers | classify | convert        (jaxvis.cli.info)
    jaxvis cache                                       (jaxvis.cli.cache)
    jaxvis visualize                                   (jaxvis.cli.visualize)
    jaxvis invert | dream | reconstruct | style        (jaxvis.cli.methods)
    jaxvis attack                                      (jaxvis.cli.attack)
    jaxvis concepts | dissect | ablate | examples | atlas   (jaxvis.cli.units)
    jaxvis gan dissect | edit                          (jaxvis.cli.gan)

Every command checks its whole request (model, layers, units, sizes, files,
output folder) before any weights load or anything compiles, and reports bad
input as one line on stderr with exit status 2.  SIGTERM (what SLURM and
Kubernetes send before preemption) is taken as Ctrl-C is: the run keeps its last
finished chunk, says how to continue, and exits with status 143.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import converters
from jaxvis.cli import attack, cache, gan, info, methods, units, visualize
from jaxvis.cli.common import HelpFormatter
from jaxvis.core import distributed
from jaxvis.core.errors import JaxvisError

DESCRIPTION = "Understand vision networks by optimizing their input: feature visualization, class inversion, " \
              "DeepDream, feature inversion, style transfer, adversarial examples, network dissection and unit ablation on "\
              "converted PyTorch networks, in JAX."
EPILOG = """examples:
  jaxvis visualize mobilenet_v2                     the main job: features.14 channels 0-15 with Lucid's defaults
  jaxvis layers mobilenet_v2                        the layer names to visualize
  jaxvis invert mobilenet_v2 --classes goldfish,volcano --method logit --size 128 --steps 128
                                                    class images in ~1 min on 2 CPU cores; the default method,
                                                    Plug-In Inversion at its reference budget, takes ~30 min a class
  jaxvis attack mobilenet_v2 sample:chelsea --method apgd --eps 4/255
  jaxvis concepts concepts/ && jaxvis dissect mobilenet_v2 features.7 --data concepts/
  jaxvis gan edit dcgan_faces --remove eye          the units of a face generator that draw eyes, removed

A command holds its --out folder while it writes it (a .jaxvis-lock file in it): a second jaxvis on the same
folder stops at once, naming the process and host that hold it.
'jaxvis COMMAND --help' shows a command's options and examples."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that a run ends as an interrupted one does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` in the main thread (elsewhere: left as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(invoked(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        refuse_unknown(parser, argv, unknown)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    return distributed.end(run(args))


def run(args: argparse.Namespace) -> int:
    """Run the command; its exit status (errors said in one line)."""
    try:
        with sigterm_interrupts():
            code = args.run(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except (JaxvisError, converters.ConversionError) as err:
        print(f"jaxvis: error: {in_flag_words(str(err))}", file=sys.stderr)
        return 2
    except Terminated:
        print("jaxvis: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("jaxvis: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return reader_went_away()
    except Exception:
        if not distributed.running():
            raise
        traceback.print_exc()  # then out at once (`distributed.end`): the other processes must not wait for it
        return 1


def reader_went_away() -> int:
    """The reader of stdout closed it (`jaxvis layers NAME | head`): stop quietly, as a killed-by-SIGPIPE
    process does (Python's advice: point stdout at devnull so that the exit's flush does not fail again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + 13  # 141: a shell's status for SIGPIPE


# The Python API's words in messages that the library and converters raise, and the command line's for them.
FLAG_WORDS = (
    (re.compile(r"weights=PATH"), "--weights PATH"),
    (re.compile(r",? ?or weights=None for a random init"), ""),
    (re.compile(r"resume=True"), "--resume"),
)


def in_flag_words(message: str) -> str:
    """`message` with the Python API's keyword arguments said as the command line's options."""
    for pattern, flag in FLAG_WORDS:
        message = pattern.sub(flag, message)
    return message


def refuse_unknown(parser: argparse.ArgumentParser, argv: Sequence[str], unknown: Sequence[str]) -> None:
    """Exit with the usage of the command the user typed and the nearest of its options to each unknown one."""
    command = innermost(parser, argv)
    options = [option for action in command._actions for option in action.option_strings]
    hints = []
    for word in unknown:
        near = difflib.get_close_matches(word.split("=", 1)[0], options, n=1) if word.startswith("-") else []
        hints.append(f"{word} (did you mean {near[0]}?)" if near else word)
    command.error(f"unrecognized arguments: {' '.join(hints)}")


def innermost(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the (sub)command that `argv` names: `jaxvis gan edit ...` -> gan edit's."""
    for word in argv:
        choices = next((action.choices for action in parser._actions
                        if isinstance(action, argparse._SubParsersAction)), {})
        if word in choices:
            parser = choices[word]
    return parser


GROUPS = (info, visualize, methods, attack, units, gan, cache)  # each module's COMMANDS, in the order `jaxvis --help` lists them


def invoked(argv: Sequence[str]) -> str | None:
    """The command named in `argv`, if it is one (the first word that is not an option)."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return first if any(first in group.COMMANDS for group in GROUPS) else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every command, or only for `command` (its options can need a method's defaults,
    which import jax: building only the one asked for keeps a bad request's answer immediate)."""
    from jaxvis import __version__

    parser = argparse.ArgumentParser(prog="jaxvis", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"jaxvis {__version__}")
    commands = parser.add_subparsers(metavar="COMMAND")
    for group in GROUPS:
        if command is None or command in group.COMMANDS:
            group.add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
