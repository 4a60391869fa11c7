"""The `jaxvis` command line: one module per group of commands.

    jaxvis models | layers | classify | convert        (jaxvis.cli.info)
    jaxvis visualize                                   (jaxvis.cli.visualize)
    jaxvis invert | dream | reconstruct | style        (jaxvis.cli.methods)
    jaxvis attack                                      (jaxvis.cli.attack)
    jaxvis concepts | dissect | ablate | examples | atlas   (jaxvis.cli.units)
    jaxvis gan dissect | edit                          (jaxvis.cli.gan)

Every command checks its whole request (model, layers, units, sizes, files,
output folder) before any weights load or anything compiles, and reports bad
input as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import converters
from jaxvis.cli import attack, gan, info, methods, units, visualize
from jaxvis.cli.common import HelpFormatter
from jaxvis.errors import JaxvisError

DESCRIPTION = "Understand vision networks by optimizing their input: feature visualization, class inversion, " \
              "DeepDream, feature inversion, style transfer, adversarial examples, network dissection and unit ablation on "\
              "converted PyTorch networks, in JAX."
EPILOG = """examples:
  jaxvis visualize mobilenet_v2                     the main job: features.14 channels 0-15 with Lucid's defaults
  jaxvis layers mobilenet_v2                        the layer names to visualize
  jaxvis invert mobilenet_v2 --classes goldfish,volcano
  jaxvis attack mobilenet_v2 sample:chelsea --method apgd --eps 4/255
  jaxvis concepts concepts/ && jaxvis dissect mobilenet_v2 features.7 --data concepts/
  jaxvis gan edit dcgan_faces --remove eye          the units of a face generator that draw eyes, removed

'jaxvis COMMAND --help' shows a command's options and examples."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(invoked(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args) or 0
    except (JaxvisError, converters.ConversionError) as err:
        print(f"jaxvis: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxvis: interrupted", file=sys.stderr)
        return 130


GROUPS = (info, visualize, methods, attack, units, gan)  # each module's COMMANDS, in the order `jaxvis --help` lists them


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
