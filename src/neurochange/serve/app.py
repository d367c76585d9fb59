"""``neurochange serve``: the local web app, its pages and its files.

:func:`create_app` wires the JSON API (:mod:`neurochange.serve.api`), the four pages (Screening,
Extraction, Runs, Results; templates and script under ``resources/web``), the project's files
(``/files/<path>``, never outside the project), NiiVue (:mod:`neurochange.sources.niivue`, from the
local cache) and the MNI152 template the viewer draws under the maps. Errors are one line of JSON
(``{"error": ...}``): 400 for input the readers refuse, 404 for what is not there, 409 for an edit
that meets a newer value, 413 for an upload over the limit, 503 for data that cannot be had.
"""

from __future__ import annotations

import functools
import gzip
import io
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from neurochange.corpus.curation_file import EditConflict
from neurochange.errors import DataUnavailableError, InputError, NeurochangeError
from neurochange.serve import api
from neurochange.serve.project import Project

PAGES = ("screening", "extraction", "runs", "results")


def _web(name: str) -> str:
    return resources.files("neurochange").joinpath(f"resources/web/{name}").read_text()


@lru_cache(maxsize=1)
def _pages() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FunctionLoader(_web), autoescape=True, undefined=jinja2.StrictUndefined)


@lru_cache(maxsize=1)
def template_bytes() -> bytes:
    """nilearn's MNI152 template (2 mm) as .nii.gz bytes: the background of the viewer."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=2)
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(img.to_bytes())
    return raw.getvalue()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _handle(status: int, request, err) -> JSONResponse:
    return _error(status, str(err))


def create_app(project_dir: str | Path, corpus_path: str | Path | None = None, *,
               source: str = "neurosynth") -> FastAPI:
    """The app serving ``project_dir`` (an existing folder) over the corpus at ``corpus_path`` (default corpus)."""
    project = Project.open(project_dir)
    context = api.Context(project, Path(corpus_path) if corpus_path else None, source)

    @asynccontextmanager
    async def lifespan(app):
        yield
        context.close()

    app = FastAPI(title="neurochange", summary="Curate treatment neuroimaging studies and explore meta-analyses",
                  lifespan=lifespan)
    app.state.context = context
    app.include_router(api.router)

    # one line of JSON per error; Starlette picks the handler of the most specific class
    for error, status in ((EditConflict, 409), (api.TooLarge, 413), (InputError, 400), (api.NotFound, 404),
                          (DataUnavailableError, 503), (NeurochangeError, 400)):
        app.add_exception_handler(error, functools.partial(_handle, status))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, err):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def _http(request, err):
        return _error(err.status_code, str(err.detail))

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/screening")

    def page(name: str):
        def render(request: Request):
            html = _pages().get_template(f"{name}.html").render(page=name, pages=PAGES, project=project.root.name)
            return HTMLResponse(html)
        return render

    for name in PAGES:
        app.get(f"/{name}", include_in_schema=False, response_class=HTMLResponse)(page(name))

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        if name == "niivue.umd.js":
            from neurochange.sources.niivue import niivue_js

            return FileResponse(niivue_js(), media_type="text/javascript")
        if name == "mni152_2mm.nii.gz":
            return Response(template_bytes(), media_type="application/gzip")
        if name not in ("app.js", "app.css", "NIIVUE_LICENSE.txt"):
            raise api.NotFound(f"no static file {name}")
        media = {"js": "text/javascript", "css": "text/css", "txt": "text/plain"}[name.rsplit(".", 1)[1]]
        return Response(_web(name), media_type=media)

    @app.get("/files/{path:path}", include_in_schema=False)
    def files(path: str):
        file = project.resolve(path)
        if not file.is_file():
            raise api.NotFound(f"no file {path}")
        media = "application/gzip" if file.name.endswith(".gz") else None
        return FileResponse(file, media_type=media, filename=None if file.suffix == ".html" else file.name,
                            content_disposition_type="inline")

    return app


__all__ = ["create_app", "PAGES"]
