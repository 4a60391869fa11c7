"""The documentation site and every command that the README and the docs show.

- The site (`mkdocs.yml`, `docs/`) builds with `mkdocs build --strict`; served on 127.0.0.1, every page
  opens in headless Chromium with no console error, every image loads, every link to a page of the site
  resolves (its anchor included), and no page asks for anything off the machine (the site works offline).
- Every `jaxvis ...` command in a ```bash block of README.md or docs/ passes its request check: it is
  parsed by the real parser and run until the point where it would load a model or start the work
  (`load_model`, or the work function of the commands that load none), which the test replaces by a stop.
- Commands in a block right after a `<!-- quick -->` line run to completion, with tiny sizes.
- A command whose model has no weights on this machine says, on its line, that it needs a download.

Skipped, saying why, where mkdocs or Chromium is missing (the test command installs both).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import importlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import numpy as np
import pytest

from test_gallery_browser import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parent.parent
SHOWN_IN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
QUICK = "<!-- quick -->"
SHIPPED_SAMPLES = {"chelsea", "coffee", "brick"}  # the photos the light install ships (jaxvis/data/io.py)
# Tiny sizes for the quick commands, each used only where the command has the option.
TINY = {"--steps": "2", "--size": "64", "--channels": "0-1", "--octaves": "1", "--samples": "16", "--count": "1"}
# The work of the commands that load no model: stopped there in a request check.
WORK = {"concepts": ("jaxvis.analysis.units.concept_set", "build_concept_set"), "convert": ("jaxvis.models.load", "load_file")}
MODEL_FIRST = ("dream", "style", "reconstruct")  # took the image first until the CLI's one-convention change


# ---------------------------------------------------------------- the commands shown

@dataclass(frozen=True)
class Shown:
    """A `jaxvis` command as shown: where, its words (without `jaxvis`), its comment, and whether quick."""

    where: str
    argv: tuple[str, ...]
    comment: str
    quick: bool

    def __str__(self) -> str:
        return f"{self.where}: jaxvis {' '.join(self.argv)}"


def bash_blocks(text: str) -> list[tuple[int, list[str], bool]]:
    """(first line number, lines, quick) of every ```bash block; quick if `<!-- quick -->` comes right before."""
    blocks, lines = [], text.splitlines()
    for number, line in enumerate(lines):
        if line.strip() == "```bash":
            end = next(k for k in range(number + 1, len(lines)) if lines[k].strip() == "```")
            before = next((lines[k].strip() for k in range(number - 1, -1, -1) if lines[k].strip()), "")
            blocks.append((number + 2, lines[number + 1 : end], before == QUICK))
    return blocks


def jaxvis_commands(line: str) -> list[tuple[tuple[str, ...], str]]:
    """The `jaxvis` commands of one shell line (a `&&` chain included): (words after `jaxvis`, comment)."""
    code, _, comment = line.partition(" #")
    found = []
    for part in code.split("&&"):
        words = shlex.split(part)
        if words and words[0] in ("jaxvis", ".venv/bin/jaxvis"):
            found.append((tuple(words[1:]), comment.strip()))
    return found


def shown_commands(paths: list[Path] = SHOWN_IN) -> list[Shown]:
    shown = []
    for path in paths:
        for first, lines, quick in bash_blocks(path.read_text()):
            for offset, line in enumerate(lines):
                for argv, comment in jaxvis_commands(line):
                    shown.append(Shown(f"{path.relative_to(ROOT)}:{first + offset}", argv, comment, quick))
    return shown


SHOWN = shown_commands()


def test_the_readme_and_the_docs_show_commands_and_mark_some_quick():
    assert any(s.where.startswith("README.md") for s in SHOWN)
    assert any(s.quick for s in SHOWN) and len({s.argv[0] for s in SHOWN}) >= 10


def test_the_readme_uses_only_the_shipped_sample_photos():
    used = set(re.findall(r"sample:(\w+)", (ROOT / "README.md").read_text()))
    assert used <= SHIPPED_SAMPLES, f"the README uses {sorted(used - SHIPPED_SAMPLES)}, which need scikit-image"


def test_the_readme_reads_in_five_minutes():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_readme_links_to_files_that_exist():
    targets = re.findall(r"\]\(([^)#\s]+)", (ROOT / "README.md").read_text())
    local = [t for t in targets if "://" not in t]
    assert local and all((ROOT / t).is_file() for t in local), [t for t in local if not (ROOT / t).is_file()]


# ---------------------------------------------------------------- the generated parts

@pytest.fixture(scope="module")
def gen_pages():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        return importlib.import_module("gen_pages")
    finally:
        sys.path.remove(str(ROOT / "docs"))


def test_a_defaults_table_shows_each_value_with_the_citation_on_its_line(gen_pages, tmp_path):
    (tmp_path / "recipe.py").write_text('''
@dataclass(frozen=True)
class Recipe:
    """The paper's defaults."""

    steps: int = 401  # loop range(400 + 1)
    jitter: int = 32
''')
    (tmp_path / "constants.py").write_text("EPS = 8 / 255  # torchattacks\nA, B = 0.2, 0.3  # of the steps\nRUN = f(1)\n")
    recipe = gen_pages.defaults_table("recipe.py", root=tmp_path)
    assert "The paper's defaults." in recipe and "| `steps` | `401` | loop range(400 + 1) |" in recipe
    assert f"| `jitter` | `32` | {gen_pages.NO_CITATION} |" in recipe
    constants = gen_pages.defaults_table("constants.py", root=tmp_path)
    assert "| `EPS` | `8 / 255` | torchattacks |" in constants and "| `B` | `0.3` | of the steps |" in constants
    assert "RUN" not in constants  # a program, not a default


def test_a_results_section_is_the_scripts_text_under_its_name(gen_pages, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# R\n\n<!-- begin speed -->\n## Speed (`benchmarks/speed.py`)\n\n| a |\n|---|\n| 1 |\n"
                       "<!-- end speed -->\n")
    section = gen_pages.results_section("speed", "../results.md", results)
    assert "`python benchmarks/speed.py`" in section and "| 1 |" in section and "## Speed" not in section
    with pytest.raises(ValueError, match="no section"):
        gen_pages.results_section("other", "results.md", results)


# ---------------------------------------------------------------- running the command line in the test

class RequestChecked(BaseException):
    """Raised where a command would load a model or start its work: everything before it passed."""


def stop(*args, **kwargs):
    raise RequestChecked


def run_cli(argv: tuple[str, ...]) -> tuple[int, str]:
    """`jaxvis ARGV` in this process: (exit status, stderr); status 0 where it reached its stop."""
    from jaxvis.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(list(argv))
        except RequestChecked:
            status = 0
        except SystemExit as exit_:  # argparse: --version, --help, a usage error
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, err.getvalue()


def stop_before_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command stops where it would load a model or, for those that load none, start the work."""
    import jaxvis.cli  # noqa: F401 (imports every command module)

    for name, module in list(sys.modules.items()):
        if name.startswith("jaxvis.cli") and hasattr(module, "load_model"):
            monkeypatch.setattr(module, "load_model", stop)
    for module, name in WORK.values():
        monkeypatch.setattr(importlib.import_module(module), name, stop)
    real_join = importlib.import_module("jaxvis.cli.distributed").join

    def join(args):  # a command across processes stops before it starts the distributed runtime
        if args.coordinator or args.num_processes or args.distributed:
            raise RequestChecked
        real_join(args)

    monkeypatch.setattr(importlib.import_module("jaxvis.cli.distributed"), "join", join)


def command_parser(argv: tuple[str, ...]):
    """The parser of the (sub)command `argv` names (`gan edit ...` -> gan edit's)."""
    from jaxvis.cli import build_parser

    parser = build_parser(argv[0])
    for word in argv:
        choices = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        parser = choices.get(word, parser)
    return parser


def takes_model_first(command: str) -> bool:
    positionals = [a.dest for a in command_parser((command,))._actions if not a.option_strings]
    return bool(positionals) and positionals[0] in ("name", "model")


def options_of(argv: tuple[str, ...]) -> set[str]:
    return {option for action in command_parser(argv)._actions for option in action.option_strings}


@pytest.fixture(scope="module")
def named_files(tmp_path_factory) -> Path:
    """The files the docs' commands name: photo.jpg, mask.png, photos/ and a tiny concept set concepts/."""
    from PIL import Image

    from jaxvis.analysis.units.concept_set import build_concept_set

    root = tmp_path_factory.mktemp("named")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((96, 128, 3)) * 255).astype(np.uint8)).save(root / "photo.jpg")
    (root / "photos").mkdir()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(root / "photos" / "a.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[20:40, 10:30] = 255
    Image.fromarray(mask).save(root / "mask.png")
    build_concept_set(root / "concepts", photos=["sample:coffee"], crops_per_photo=1, collages=1, size=64)
    return root


@pytest.fixture()
def workdir(named_files, tmp_path, monkeypatch) -> Path:
    """A fresh current folder in which the named files are found."""
    for entry in named_files.iterdir():
        (tmp_path / entry.name).symlink_to(entry)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def skip_until_model_first(shown: Shown) -> None:
    if shown.argv[0] in MODEL_FIRST and not takes_model_first(shown.argv[0]):
        pytest.xfail(f"TODO: `jaxvis {shown.argv[0]}` takes the model first once the CLI's one-convention "
                     "change lands; the docs show that form")


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_every_shown_command_passes_its_request_check(shown, workdir, monkeypatch):
    skip_until_model_first(shown)
    stop_before_work(monkeypatch)
    status, err = run_cli(shown.argv)
    assert status == 0, f"{shown} is refused: {err.strip()}"
    assert not (workdir / "jaxvis-out").exists(), f"{shown} made its output folder before any work"


@pytest.mark.parametrize("shown", [s for s in SHOWN if s.quick], ids=str)
def test_quick_commands_run_to_completion(shown, workdir):
    skip_until_model_first(shown)
    options = options_of(shown.argv)
    tiny = [word for option, value in TINY.items() if option in options for word in (option, value)]
    status, err = run_cli(shown.argv + tuple(tiny))
    assert status == 0, f"{shown} failed: {err.strip()}"


@pytest.mark.parametrize("shown", SHOWN, ids=str)
def test_a_command_that_needs_a_download_says_so(shown):
    import converters
    from jaxvis.cli import build_parser
    from jaxvis.models.load import architecture

    args, _ = build_parser(shown.argv[0]).parse_known_args(list(shown.argv))
    name = getattr(args, "model", None) or getattr(args, "name", None)
    runs_model = shown.argv[0] not in ("layers", "models", "concepts")
    if not (runs_model and name):
        return
    pretrained = architecture(name).pretrained
    if pretrained and converters.find_local(pretrained) is None:
        assert "download" in shown.comment, f"{shown} needs a download here; its line must say so"


# ---------------------------------------------------------------- the site in a browser

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with `mkdocs build --strict`, served on 127.0.0.1 for the module's tests."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the test command installs the docs' packages)")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                            "-d", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-4000:]
    handler = functools.partial(QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@dataclass
class Visit:
    """What one page showed: its element ids, images (src, natural width), links, and errors."""

    ids: set[str]
    images: list[tuple[str, int]]
    links: list[str]


def visit(page, url: str) -> Visit:
    page.goto(url)
    page.wait_for_load_state("load")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return Visit(set(page.eval_on_selector_all("[id], a[name]", "els => els.map(e => e.id || e.name)")),
                 page.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.naturalWidth])"),
                 page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"))


def local_target(site_dir: Path, origin: str, link: str) -> tuple[Path, str] | None:
    """A link to the site as (file, anchor); None for a link elsewhere."""
    url, anchor = urldefrag(link)
    if not url.startswith(origin + "/"):
        return None
    path = urlparse(url).path.lstrip("/")
    target = site_dir / path
    return (target / "index.html" if path == "" or path.endswith("/") else target), anchor


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no Chromium here: apt-get install chromium (the CI script does)")
def test_every_page_opens_with_its_images_and_links_and_no_console_error(site):
    playwright = pytest.importorskip("playwright.sync_api")
    site_dir, origin = site
    pages = sorted(p for p in site_dir.rglob("*.html") if p.name != "404.html")
    errors, offsite, visits = [], [], {}
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))
        page.on("request", lambda r: None if r.url.startswith((origin, "data:", "blob:", "about:"))
                else offsite.append(r.url))
        for path in pages:
            visits[path] = visit(page, f"{origin}/{path.relative_to(site_dir).as_posix()}")
        browser.close()
    assert offsite == [], f"the site asks for files off this machine: {sorted(set(offsite))}"
    assert errors == [], errors
    for path, seen in visits.items():
        name = path.relative_to(site_dir)
        broken = [src for src, width in seen.images if width == 0]
        assert not broken, f"{name}: images that do not load: {broken}"
        for link in seen.links:
            target = local_target(site_dir, origin, link)
            if target is None:
                continue
            file, anchor = target
            assert file.is_file(), f"{name} links to a missing page: {link}"
            if anchor and file.suffix == ".html":
                assert anchor in visits[file].ids, f"{name} links to a missing anchor: {link}"
    assert len(pages) >= 20


def test_the_cli_reference_covers_every_command(site):
    from jaxvis.cli import GROUPS

    reference = (site[0] / "reference" / "cli.html").read_text()
    for group in GROUPS:
        for command in group.COMMANDS:
            assert f'id="jaxvis-{command}"' in reference, f"jaxvis {command} is missing from the CLI reference"
