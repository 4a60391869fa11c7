"""mkdocs hooks: the pages that follow the code are generated at build time, never written by hand.

- `reference/cli.md`: every command's usage, options (defaults, choices) and examples, read from the
  argparse parsers of `jaxvis.cli` (`build_parser`), so a new flag or command needs no page edit.
- `reference/api/*.md`: one page per package of `jaxvis` and `converters`, found by walking the source
  tree; mkdocstrings renders each module's docstrings, so a moved or new module needs no page edit.
- `results.md`: `benchmarks/RESULTS.md` as the benchmark scripts wrote it.
- In any page, `<!-- defaults: PATH -->` becomes a table of a method's defaults with the citation each
  carries in the code (a `Recipe`/`Settings` dataclass, or the module's UPPER_CASE constants), and
  `<!-- results: SECTION -->` the section of `benchmarks/RESULTS.md` that one script wrote.
"""

from __future__ import annotations

import argparse
import ast
import html
import io
import os
import posixpath
import re
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PACKAGES = ("jaxvis", "converters")
SKIPPED_PACKAGES = ("jaxvis.cli",)  # the command line is documented from its parsers instead
API_NAV_TITLE = "API reference"
NO_CITATION = "none on its line (the docstring above may give it)"
MARKER = re.compile(r"<!--\s*(defaults|results):\s*(\S+)\s*-->")


# ---------------------------------------------------------------- the command line, from its parsers

def cli_reference() -> str:
    """The CLI reference page: `jaxvis --help`, then each command (and `gan` action) in parser order."""
    os.environ["COLUMNS"] = "88"  # argparse wraps usage lines to the terminal: keep the page stable
    from jaxvis.cli import build_parser

    parser = build_parser()
    lines = ["# Command-line reference", "",
             "Generated from the argparse parsers in `jaxvis/cli/` at every docs build: what `jaxvis COMMAND "
             "--help` prints, as tables. Every option's default and choices are the parser's own.", "",
             "```text", parser.format_help().rstrip(), "```", ""]
    for path, sub, summary in commands(parser, ["jaxvis"]):
        lines += command_section(path, sub, summary)
    return "\n".join(lines) + "\n"


def commands(parser: argparse.ArgumentParser, path: list[str]) -> list[tuple[list[str], argparse.ArgumentParser, str]]:
    """Every (sub)command below `parser`, depth first: (words, its parser, its one-line summary)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((path + [name], sub, summaries.get(name, "")))
                found += commands(sub, path + [name])
    return found


def command_section(path: list[str], parser: argparse.ArgumentParser, summary: str) -> list[str]:
    """One command's heading, description, usage, options table and examples."""
    lines = [f"## {' '.join(path)}", "", html.escape(parser.description or summary), "",
             "```text", parser.format_usage().strip(), "```", ""]
    rows = [option_row(parser, action) for action in parser._actions
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]
    if rows:
        lines += ["| argument | meaning | default | choices |", "|---|---|---|---|", *rows, ""]
    if parser.epilog:
        lines += ["```text", parser.epilog.strip(), "```", ""]
    return lines


def option_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """A table row: the flag (or positional) with its metavar, the expanded help, default and choices."""
    metavar = action.metavar or action.dest.upper()
    if action.option_strings:
        takes_value = action.nargs != 0
        name = ", ".join(f"{flag} {metavar}" if takes_value else flag for flag in action.option_strings)
    else:
        name = action.metavar or action.dest
        name += " ..." if action.nargs in ("+", "*") else ""
    meaning = parser._get_formatter()._expand_help(action) if action.help else ""
    meaning = meaning.removesuffix(f" (default: {action.default})")  # the formatter's: the default has a column
    meaning += " (required)" if action.required and action.option_strings else ""
    default = "" if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings \
        else f"`{action.default}`"
    choices = ", ".join(f"`{c}`" for c in action.choices) if action.choices else ""
    return f"| `{name}` | {cell(meaning)} | {default} | {choices} |"


def cell(text: str) -> str:
    return html.escape(" ".join(text.split()), quote=False).replace("|", "\\|")


# ---------------------------------------------------------------- the API, from the source tree

def api_pages(root: Path = ROOT) -> dict[str, str]:
    """`reference/api/NAME.md` -> page: one per package (its modules under mkdocstrings' `:::`)."""
    pages = {}
    for package in PACKAGES:
        for init in sorted((root / package).rglob("__init__.py")):
            name = ".".join(init.parent.relative_to(root).parts)
            if name.startswith(SKIPPED_PACKAGES) or "__pycache__" in init.parts:
                continue
            modules = sorted(p for p in init.parent.glob("*.py") if not p.name.startswith("_"))
            body = [f"# {name}", "", f"::: {name}", "    options:", "      members: false",
                    "      show_root_heading: false", "      show_root_toc_entry: false", ""]
            body += [f"::: {name}.{module.stem}\n" for module in modules]
            pages[f"reference/api/{name}.md"] = "\n".join(body)
    return pages


def api_nav(pages: dict[str, str]) -> list[dict[str, str]]:
    """Nav entries titled by package, `jaxvis` itself first."""
    names = sorted((uri.rsplit("/", 1)[-1][:-3], uri) for uri in pages)
    return [{name: uri} for name, uri in sorted(names, key=lambda item: (item[0] != "jaxvis", item[0]))]


# ---------------------------------------------------------------- defaults with their citations

def defaults_table(target: str, root: Path = ROOT) -> str:
    """A method's defaults as a table: name, value as written, and the citation its line carries."""
    path = root / target
    source = path.read_text()
    tree = ast.parse(source)
    comments = line_comments(source)
    recipe = next((node for node in tree.body if isinstance(node, ast.ClassDef)
                   and node.name in ("Recipe",)), None)
    if recipe is not None:
        caption = ast.get_docstring(recipe) or f"`{recipe.name}` in `{target}`"
        rows = [(node.target.id, ast.get_source_segment(source, node.value), comments.get(node.lineno, ""))
                for node in recipe.body if isinstance(node, ast.AnnAssign) and node.value is not None]
    else:
        caption = f"Module constants of `{target}`"
        rows = [(name, value, comments.get(node.lineno, ""))
                for node in tree.body if is_value(node) for name, value in constant_values(source, node)]
    if not rows:
        raise ValueError(f"{target} has no Recipe and no UPPER_CASE constants to tabulate")
    lines = [f"*Defaults, read from `{target}` at build time. {cell(caption)}*", "",
             "| default | value | source cited on its line in the code |", "|---|---|---|"]
    lines += [f"| `{name}` | `{' '.join(value.split())}` | {cell(note) or NO_CITATION} |" for name, value, note in rows]
    return "\n".join(lines) + "\n"


def line_comments(source: str) -> dict[int, str]:
    """Line number -> the text of the comment ending that line."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0]: tok.string.lstrip("#").strip() for tok in tokens if tok.type == tokenize.COMMENT}


def constant_values(source: str, node: ast.stmt) -> list[tuple[str, str]]:
    """(NAME, value as written) of a module-level UPPER_CASE assignment; `A, B = 1, 2` gives both pairs."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    pairs = []
    for target in targets:
        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            pairs += [(t.id, ast.get_source_segment(source, v)) for t, v in zip(target.elts, node.value.elts)
                      if isinstance(t, ast.Name)]
        elif isinstance(target, ast.Name):
            pairs.append((target.id, ast.get_source_segment(source, node.value)))
    return [(name, value) for name, value in pairs if name.isupper()]


def is_value(node: ast.stmt) -> bool:
    """A constant written as numbers, strings and containers of them (not a program or a class)."""
    value = getattr(node, "value", None)
    return value is not None and not any(isinstance(n, (ast.Call, ast.Name, ast.Lambda, ast.Attribute))
                                         for n in ast.walk(value))


# ---------------------------------------------------------------- benchmarks/RESULTS.md

def results_section(name: str, link: str = "results.md", results: Path = RESULTS) -> str:
    """The section `name` of RESULTS.md as its script wrote it, headed by where it comes from
    (`link`: the results page, relative to the page that shows the section)."""
    text = results.read_text()
    match = re.search(rf"<!-- begin {re.escape(name)} -->\n(.*?)<!-- end {re.escape(name)} -->", text, re.S)
    if match is None:
        raise ValueError(f"benchmarks/RESULTS.md has no section {name!r}")
    body = match.group(1).strip()
    heading = re.match(r"## (.*)\n", body)
    script = re.search(r"`(?:python )?(benchmarks/\w+\.py[^`]*)`", heading.group(1) if heading else body)
    body = body[heading.end():].strip() if heading else body
    where = f"`python {script.group(1)}`" if script else "its script"
    return (f"*Measured by {where}: section `{name}` of [`benchmarks/RESULTS.md`]({link}), "
            f"as the script wrote it.*\n\n{body}\n")


def results_page(results: Path = RESULTS) -> str:
    return ("*`benchmarks/RESULTS.md`, included at build time. Each section is written by the benchmark "
            "script it names; nothing here is typed by hand except the notes outside the sections.*\n\n"
            + results.read_text())


def expand_markers(markdown: str, src_uri: str = "index.md") -> str:
    """Replace every `<!-- defaults: ... -->` and `<!-- results: ... -->` by what it names
    (`src_uri`: the page's path in docs/, for the link to the results page)."""
    link = posixpath.relpath("results.md", posixpath.dirname(src_uri) or ".")

    def replace(match: re.Match) -> str:
        kind, argument = match.groups()
        return defaults_table(argument) if kind == "defaults" else results_section(argument, link)

    return MARKER.sub(replace, markdown)


# ---------------------------------------------------------------- mkdocs hooks

def on_config(config: Any) -> Any:
    """Fill the nav's API reference section with one entry per generated package page."""
    entries = api_nav(api_pages())
    for item in config["nav"] or []:
        for section in item.values() if isinstance(item, dict) else []:
            for sub in section if isinstance(section, list) else []:
                if isinstance(sub, dict) and API_NAV_TITLE in sub:
                    sub[API_NAV_TITLE] = entries
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    generated = {"reference/cli.md": cli_reference(), "results.md": results_page(), **api_pages()}
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand_markers(markdown, page.file.src_uri)
