"""MkDocs hooks for the lesson's website (mkdocs.yml names this file; it is not part of the site).

Two jobs, both done at build time so that the committed files stay as they are:

* The episode notebooks are committed without outputs. Before the pages are rendered, they are run
  the way a learner runs them: one after another, in one fresh folder (episode 05 loads the model
  episode 04 saved), offline, on the settings cell's default data. The run copies are kept in
  build/site-notebooks/ and reused until a notebook or a file of cnn_torch/ changes, so a second
  build (or `mkdocs serve`) takes seconds. Any cell error fails the build.
* The clone's figures (``fig/*.png``, the lesson's plots from real runs) are served as ``fig/...``
  beside the pages' own, so a page's ``![...](../fig/x.png)`` shows the same picture on GitHub and here.
* The pages link to files the site does not hold (``../cnn_torch/training.py#L130``, the README).
  Those links become code references a learner can find in the clone
  (``cnn_torch/training.py:130``), so that ``--strict`` still fails on every other broken link.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

import nbclient
import nbformat
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.site")

LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")  # [text](target); not images
WIDGET = "application/vnd.jupyter.widget-view+json"
CELL_TIMEOUT_S = 900  # as tests/test_notebooks.py: the longest cell trains a few models on the CPU


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def code_references(markdown: str, folder: Path, site_files: set[Path], root: Path) -> str:
    """Turn each link to a file the site does not hold (or to a folder) into a code reference.

    ``[training.py](../cnn_torch/training.py#L130)`` becomes ``cnn_torch/training.py:130``;
    ``[cnn-torch](../../README.md)`` becomes ``cnn-torch (`README.md`)``. ``folder`` is where the
    page's file lies; links to the web, to anchors and to ``site_files`` are left alone.
    """

    def replace(match: re.Match) -> str:
        text, target = match.groups()
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (folder / path).resolve()
        if resolved in site_files or not resolved.exists() or not resolved.is_relative_to(root):
            return match.group(0)  # a page of the site, or not a file of the clone: MkDocs says if it is broken
        reference = resolved.relative_to(root).as_posix() + ("/" if resolved.is_dir() else "")
        if line := re.fullmatch(r"L(\d+)", anchor):
            reference += f":{line.group(1)}"
        if reference.split(":")[0].endswith(text.strip("`")):  # the text names the file: the reference says it all
            return f"`{reference}`"
        return f"{text} (`{reference}`)"

    return LINK.sub(replace, markdown)


def _site_files(files: Files, config: MkDocsConfig) -> set[Path]:
    """The files of docs/ that the site holds (not those exclude_docs leaves out), by absolute path."""
    docs_dir = Path(config.docs_dir).resolve()
    return {docs_dir / file.src_uri for file in files if file.inclusion.is_included()}


def _sources_key(notebooks: list[Path], root: Path) -> str:
    """What the run notebooks depend on: their cells and the code they import."""
    digest = hashlib.sha256()
    for path in [*notebooks, *sorted((root / "cnn_torch").rglob("*.py"))]:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_notebooks(notebooks: list[Path], out: Path, root: Path) -> None:
    """Run the notebooks in order in one fresh folder, as a learner would; keep the run copies in ``out``."""
    key = _sources_key(notebooks, root)
    key_file = out / "sources.sha256"
    if key_file.is_file() and key_file.read_text() == key and all((out / nb.name).is_file() for nb in notebooks):
        log.info("site: the notebooks' cells and cnn_torch/ are unchanged: reusing the run in %s", out)
        return
    shutil.rmtree(out, ignore_errors=True)
    workdir = out / "run"  # the notebooks' data/, models/, model_best.pt land here
    workdir.mkdir(parents=True)
    # the decoded image folders' cache, kept with the run rather than in ~/.cache
    env = {**os.environ, "CNN_TORCH_CACHE": str(out / "cache")}
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                         resources={"metadata": {"path": str(workdir)}})  # fmt: skip
        start = time.perf_counter()
        client.execute(env=env)  # raises CellExecutionError, with the cell and its traceback, on any error
        log.info("site: ran %s in %.0f s", path.name, time.perf_counter() - start)
        nbformat.write(notebook, out / path.name)
    key_file.write_text(key)


@event_priority(50)  # before mkdocs-jupyter's on_files, which makes the notebooks pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Swap each notebook for its run copy, its links to the clone's files made code references."""
    root, site_files = _root(config), _site_files(files, config)
    notebooks = sorted((file for file in files if file.src_uri.endswith(".ipynb")), key=lambda file: file.src_uri)
    out = root / "build" / "site-notebooks"
    run_notebooks([Path(file.abs_src_path) for file in notebooks], out, root)
    pages = out / "pages"  # the copies the site renders, laid out as in docs/
    for file in notebooks:
        notebook = nbformat.read(out / Path(file.src_uri).name, as_version=4)
        folder = Path(file.abs_src_path).parent
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = code_references(cell.source, folder, site_files, root)
            # fit's live bar is a Jupyter widget (tqdm), alive only in a running kernel: a static page
            # would fetch a widget manager from the web to draw it finished. Keras's line after it stays.
            if cell.cell_type == "code":
                cell.outputs = [output for output in cell.outputs if WIDGET not in output.get("data", {})]
        notebook.metadata.pop("widgets", None)
        (pages / file.src_uri).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, pages / file.src_uri)
        files.remove(file)
        # a File read from pages/ rather than docs/ (mkdocs-jupyter's wrapper does not keep File.generated's path)
        files.append(File(file.src_uri, src_dir=str(pages), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))  # fmt: skip
    for figure in sorted((root / "fig").glob("*.png")):  # the clone's figures, served beside docs/fig/'s
        uri = f"fig/{figure.name}"
        if files.get_file_from_path(uri) is not None:
            raise ValueError(f"fig/{figure.name} is both in docs/fig/ and in the clone's fig/: rename one")
        files.append(File(uri, src_dir=str(root), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))  # fmt: skip
    return files


CLONE_FIGURE = re.compile(r"(!\[[^\]\n]*\]\()\.\./fig/")  # ![alt](../fig/x.png) on a page at docs/'s top


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri.endswith(".ipynb"):  # done in on_files; mkdocs-jupyter renders the notebook itself
        return markdown
    folder = Path(page.file.abs_src_path).parent
    if folder == Path(config.docs_dir).resolve():
        markdown = CLONE_FIGURE.sub(r"\1fig/", markdown)
    return code_references(markdown, folder, _site_files(files, config), _root(config))
