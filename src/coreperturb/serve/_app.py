"""``coreperturb serve``: a local web explorer and JSON API over a fitted model (FastAPI + uvicorn).

Install with ``pip install 'coreperturb[serve]'``. The app binds 127.0.0.1 unless told otherwise; any other
host needs a bearer token (``Authorization: Bearer TOKEN``, compared in constant time; the pages take it
once as ``?token=`` and keep it in an HTTP-only cookie). Every input is validated (names: at most
:data:`MAX_NAME` printable characters; ``top`` at most :data:`MAX_TOP`), request bodies are refused above
:data:`MAX_BODY` bytes, each answer has :data:`TIME_LIMIT_S` seconds, every error is one JSON line
(``{"error": ..., "suggestions": [...]}``), and a 5xx never shows a traceback. No endpoint reads a path that
a client names.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pandas as pd

from coreperturb._defaults import SERVE_PORT, TOP
from coreperturb._deprecation import keyword_options
from coreperturb._escape import csv_safe
from coreperturb.errors import CorePerturbError
from coreperturb.serve._pages import effect_plot, render, table_html
from coreperturb.serve._security import LOCAL_HOSTS, allowed_hosts, check_host, security_headers
from coreperturb.serve._service import BadRequest, Busy, NotFound, Pending, PredictionService, Ranked, records
from coreperturb.stages import DEFAULT_RANK_BY, RANK_BY
from coreperturb.stages._ranking import short_list

log = logging.getLogger(__name__)

MAX_TOP = 500
MAX_NAME = 100
MAX_BODY = 16_384
TIME_LIMIT_S = 60.0
NAME_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
INSTALL_HINT = "coreperturb serve needs FastAPI and uvicorn: pip install 'coreperturb[serve]'"
RANKING_COLUMNS = [
    "p_de",
    "p_prior",
    "excess",
    "effect",
    "p_up",
    "call",
    "call_dir",
    "n_pos_evidence",
    "n_neg_evidence",
    "on_target",
    "flag",
]
RANK_BY_PATTERN = "^(" + "|".join(RANK_BY) + ")$"


def short_note(n: int, top: int, who: str = "responders") -> str:
    """A list title's note when fewer than ``top`` rows pass the floor."""
    text = short_list(n, top, who)
    return f" ({text})" if text else ""


def _check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value) or not value.strip():
        raise BadRequest(f"{what} must be 1 to {MAX_NAME} printable characters")
    return value.strip()


def create_app(
    service: PredictionService,
    token: str | None = None,
    hosts: Sequence[str] | None = None,
) -> Any:
    """The ASGI app over one :class:`PredictionService`.

    Args:
        service: The loaded model and its answers.
        token: If set, every request needs it (bearer header, or the cookie that ``/?token=`` sets).
        hosts: ``Host`` headers answered (:func:`allowed_hosts`; default: this machine's loopback names).
    """
    try:
        from fastapi import FastAPI, Query, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import (
            HTMLResponse,
            JSONResponse,
            PlainTextResponse,
            RedirectResponse,
            Response,
        )
        from starlette.exceptions import HTTPException as StarletteHTTPException
    except ImportError:
        raise CorePerturbError(INSTALL_HINT) from None

    app = FastAPI(
        title="coreperturb",
        summary="Predicted gene responses to unseen perturbations (CORE), ranked by how specific they are.",
        version=__import__("coreperturb").__version__,
        # the interactive docs load scripts from CDNs: off (the schema stays at /openapi.json)
        docs_url=None,
        redoc_url=None,
    )
    headers = security_headers()
    # middleware added later runs earlier: host check innermost of the three, security headers outermost (on
    # every response, refusals included)
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=list(hosts) if hosts is not None else allowed_hosts("")
    )

    def error(status: int, message: str, suggestions: list[str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message, "suggestions": suggestions or []}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return error(413, f"request body over {MAX_BODY} bytes")
        if token is not None:
            given = ""
            auth = request.headers.get("authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            given = (
                given or request.cookies.get("coreperturb_token", "") or request.query_params.get("token", "")
            )
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "missing or wrong token (Authorization: Bearer TOKEN)")
            if request.query_params.get("token") and request.url.path == "/":
                resp = RedirectResponse("/", status_code=303)
                resp.set_cookie("coreperturb_token", token, httponly=True, samesite="strict")
                return resp
        try:
            return await asyncio.wait_for(call_next(request), timeout=TIME_LIMIT_S)
        except TimeoutError:
            return error(503, f"the answer took longer than {TIME_LIMIT_S:.0f} s")
        except Exception:  # never a traceback to the client
            log.exception("request failed: %s", request.url.path)
            return error(500, "internal error (see the server log)")

    @app.middleware("http")
    async def secure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        head = request.method == "HEAD"
        if head:  # HEAD is GET without the body
            request.scope["method"] = "GET"
        response = await call_next(request)
        if head:
            response = Response(status_code=response.status_code, headers=dict(response.headers))
        for k, v in headers.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path"))
        return error(422, f"invalid {where or 'request'}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail))

    def answer(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Pending as exc:
            return JSONResponse(
                {"status": "computing", "done": exc.done, "total": exc.total, "retry_after_s": 5},
                status_code=202,
                headers={"Retry-After": "5"},
            )
        except Busy as exc:
            return JSONResponse(
                {"error": str(exc), "suggestions": [], "retry_after_s": 30},
                status_code=429,
                headers={"Retry-After": "30"},
            )
        except NotFound as exc:
            return error(404, str(exc), exc.suggestions)
        except BadRequest as exc:
            return error(400, str(exc))
        except CorePerturbError as exc:
            return error(400, str(exc))

    def ranking_json(r: Ranked, first: str, fmt: str) -> Any:
        cols = [first, *RANKING_COLUMNS]
        rows = r.rows[cols]
        if fmt == "csv":
            return PlainTextResponse(csv_safe(rows).to_csv(index=False), media_type="text/csv")
        return {
            "query": r.query,
            "name": r.name,
            "renamed_from": r.renamed_from,
            "flag": r.flag,
            "rows": records(rows),
        }

    top_q = Query(TOP, ge=1, le=MAX_TOP, description=f"rows to return (at most {MAX_TOP})")
    fmt_q = Query("json", pattern="^(json|csv)$")
    line_q = Query(None, max_length=MAX_NAME)

    @app.get("/api/health")
    def health() -> dict[str, Any]:
        """What the server holds."""
        return service.health()

    @app.get("/api/perturbations/{name}")
    def perturbation(
        name: str,
        top: int = top_q,
        rank_by: str = Query(DEFAULT_RANK_BY, pattern=RANK_BY_PATTERN),
        cell_line: str | None = line_q,
        format: str = fmt_q,
    ) -> Any:
        """The genes one perturbation changes, most specific first (``rank_by=excess``: p_de − p_prior), only
        those above the floor (:data:`coreperturb.stages.MIN_EXCESS`): a list may be shorter than ``top``."""
        return answer(
            lambda: ranking_json(
                service.perturbation(_check_name(name, "name"), top, rank_by, cell_line), "gene", format
            )
        )

    @app.get("/api/genes/{name}")
    def gene(
        name: str,
        top: int = top_q,
        rank_by: str = Query("down", pattern=RANK_BY_PATTERN),
        cell_line: str | None = line_q,
        format: str = fmt_q,
    ) -> Any:
        """The candidate perturbations that move one gene most (``rank_by=down``: those that lower it)."""
        return answer(
            lambda: ranking_json(
                service.gene(_check_name(name, "name"), top, rank_by, cell_line), "perturbation", format
            )
        )

    @app.get("/api/explain")
    def explain(
        perturbation: str = Query(..., max_length=MAX_NAME),
        gene: str = Query(..., max_length=MAX_NAME),
        cell_line: str | None = line_q,
    ) -> Any:
        """The evidence behind one (perturbation, gene) prediction, with the prior and the effect."""
        return answer(
            lambda: service.explain(
                _check_name(perturbation, "perturbation"), _check_name(gene, "gene"), cell_line
            )
        )

    @app.get("/api/search")
    def search(q: str = Query(..., min_length=1, max_length=MAX_NAME)) -> Any:
        """Perturbations, genes and drug names starting with ``q``, and how the CLI would read ``q``."""
        return answer(lambda: service.search(_check_name(q, "q")))

    # -- pages ----------------------------------------------------------------------------------------

    info = f"{service.method} · {', '.join(service.cell_lines)}"

    def page(name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(render(name, info=info, **ctx), status_code=status)

    def page_error(exc: CorePerturbError, prefix: str, q: str) -> HTMLResponse:
        status = 404 if isinstance(exc, NotFound) else 429 if isinstance(exc, Busy) else 400
        sugg = exc.suggestions if isinstance(exc, NotFound) else []
        return page("error", status, title="Not found" if status == 404 else "Cannot answer", message=str(exc),
                    suggestions=sugg, prefix=prefix, q=q)  # fmt: skip

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def home() -> HTMLResponse:
        return page(
            "home", title="coreperturb explorer", health=service.health(), examples=service.examples(), q=""
        )

    @app.get("/go", include_in_schema=False)
    def go(q: str = Query("", max_length=MAX_NAME)) -> Any:
        from urllib.parse import quote

        q = q.strip()
        if not q:
            return RedirectResponse("/", status_code=303)
        try:
            name, _ = service.resolve_perturbation(q)
            return RedirectResponse(f"/perturbation/{quote(name, safe='')}", status_code=303)
        except NotFound:
            pass
        try:
            name, _ = service.resolve_gene(q)
            return RedirectResponse(f"/gene/{quote(name, safe='')}", status_code=303)
        except NotFound as exc:
            return page_error(exc, "/perturbation/", q)

    @app.get("/perturbation/{name}", response_class=HTMLResponse, include_in_schema=False)
    def perturbation_page(name: str, top: int = top_q, cell_line: str | None = line_q) -> HTMLResponse:
        try:
            _check_name(name, "name")
            has_dir = any(k[1] == "dir" for k in service.models.models)
            line = service.cell_line(cell_line)
            main = service.perturbation(name, top, "excess", line)
            tables = []
            pair = ("perturbation", main.name)
            cols = ["gene", "excess", "p_de", "p_prior", "call", "n_pos_evidence", "n_neg_evidence"]
            if has_dir:
                for rank_by, cls, title in (
                    ("up", "up", "specific responders, up"),
                    ("down", "down", "specific responders, down"),
                ):
                    r = service.perturbation(name, top, rank_by, line)
                    c = [*cols[:1], RANK_BY[rank_by], "p_up", *cols[1:5], "call_dir", *cols[5:]]
                    tables.append(
                        {
                            "title": title + short_note(len(r.rows), top),
                            "cls": cls,
                            "html": table_html(r.rows[c], ("gene", "/gene/"), pair),
                        }
                    )
            else:
                tables.append(
                    {
                        "title": "specific responders" + short_note(len(main.rows), top),
                        "cls": "up",
                        "html": table_html(main.rows[cols], ("gene", "/gene/"), pair),
                    }
                )
            freq = service.perturbation(name, top, "p_de", line, min_excess=None).rows
            tables.append({"title": "likeliest DE (p_de; mostly always-responding genes)", "cls": "",
                           "html": table_html(freq[["gene", "p_de", "p_prior", "excess", "call"]], ("gene", "/gene/"), pair)})  # fmt: skip
            allrows = service._cache.get(("p", main.name, line), lambda: None)
            plot = effect_plot(allrows, list(main.rows["gene"])) if allrows is not None else ""
        except CorePerturbError as exc:
            return page_error(exc, "/perturbation/", name)
        warnings = []
        if "training_perturbation" in main.flag:
            warnings.append(
                f"{main.name} was screened in {line}: these are predictions without its own rows, not its measurements."
            )
        if "no_kg_information" in main.flag:
            warnings.append(
                f"The KG knows nothing about {main.name}: every score is the gene's prior, and no effect can be stated."
            )
        from markupsafe import Markup

        return page("perturbation", title=main.name, r=main, line=line, method=service.method, top=top,
                    tables=[{**t, "html": Markup(t["html"])} for t in tables], plot=Markup(plot),
                    warnings=warnings, q=main.name)  # fmt: skip

    @app.get("/gene/{name}", response_class=HTMLResponse, include_in_schema=False)
    def gene_page(name: str, top: int = top_q, cell_line: str | None = line_q) -> HTMLResponse:
        from markupsafe import Markup

        try:
            _check_name(name, "name")
            line = service.cell_line(cell_line)
            has_dir = any(k[1] == "dir" for k in service.models.models)
            pair_cols = [
                "perturbation",
                "excess",
                "p_de",
                "p_prior",
                "call",
                "n_pos_evidence",
                "n_neg_evidence",
                "flag",
            ]
            tables = []
            modes = (
                (("down", "down", "perturbations that lower it"), ("up", "up", "perturbations that raise it"))
                if has_dir
                else (("excess", "up", "perturbations that change it"),)
            )
            r = None
            for rank_by, cls, title in modes:
                r = service.gene(name, top, rank_by, line)
                key = RANK_BY[rank_by]
                direction = ["p_up", "call_dir"] if rank_by != "excess" else []
                c = [pair_cols[0], key, *direction[:1], *pair_cols[1:5], *direction[1:], *pair_cols[5:]]
                c = list(dict.fromkeys(c))
                tables.append(
                    {
                        "title": title + short_note(len(r.rows), top, "perturbations"),
                        "cls": cls,
                        "html": Markup(
                            table_html(r.rows[c], ("perturbation", "/perturbation/"), ("gene", r.name))
                        ),
                    }
                )
            assert r is not None
            prior = r.rows["p_prior"].iloc[0] if len(r.rows) else float("nan")
        except Pending as exc:
            pct = 100 * exc.done // max(exc.total, 1)
            return page("pending", title=name, message=f"Scoring every candidate perturbation on {name}: "
                        f"{exc.done} of {exc.total} done ({pct}%). This page reloads itself.", q=name)  # fmt: skip
        except CorePerturbError as exc:
            return page_error(exc, "/gene/", name)
        return page("gene", title=r.name, r=r, line=line, method=service.method, top=top, tables=tables,
                    prior=f"{prior:.3f}", rank_by=modes[0][0], q=r.name)  # fmt: skip

    @app.get("/explain", response_class=HTMLResponse, include_in_schema=False)
    def explain_page(
        perturbation: str = Query(..., max_length=MAX_NAME),
        gene: str = Query(..., max_length=MAX_NAME),
        cell_line: str | None = line_q,
    ) -> HTMLResponse:
        from markupsafe import Markup

        try:
            e = service.explain(
                _check_name(perturbation, "perturbation"), _check_name(gene, "gene"), cell_line
            )
        except CorePerturbError as exc:
            return page_error(exc, "/perturbation/", perturbation)
        ev = pd.DataFrame(e["evidence"])
        related = ("related_perturbation", "/perturbation/")  # each related perturbation's own page
        cols = ["related_perturbation", "similarity", "strongest_relation", "link"]
        pos = ev[ev["evidence"] == "positive"][cols] if len(ev) else pd.DataFrame(columns=cols)
        neg = ev[ev["evidence"] == "negative"][cols] if len(ev) else pd.DataFrame(columns=cols)
        return page("explain", title=f"{e['perturbation']} → {e['gene']}", e=e,
                    pos=Markup(table_html(pos, link=related)), neg=Markup(table_html(neg, link=related)),
                    drivers=Markup(table_html(pd.DataFrame(e["drivers"]))), q=e["perturbation"],
                    similar=Markup(table_html(pd.DataFrame(e["similar_in_other_lines"]), link=related))
                    if e["similar_in_other_lines"] else "")  # fmt: skip

    return app


@keyword_options
def serve(
    service: PredictionService, *, host: str = "127.0.0.1", port: int = SERVE_PORT, token: str | None = None,
    on_ready: Callable[[str], None] | None = None, allow_hosts: Sequence[str] = (),
) -> None:  # fmt: skip
    """Run the app with uvicorn until SIGINT / SIGTERM (uvicorn shuts down gracefully on both).

    Raises:
        CorePerturbError: A non-local host without a token, or FastAPI / uvicorn missing.
    """
    check_host(host, token)
    try:
        import uvicorn
    except ImportError:
        raise CorePerturbError(INSTALL_HINT) from None
    app = create_app(service, token, allowed_hosts(host, allow_hosts))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets=sockets)
            for s in server.servers:
                for sock in s.sockets:
                    h, p = sock.getsockname()[:2]
                    on_ready(f"http://[{h}]:{p}" if ":" in str(h) else f"http://{h}:{p}")
                    return

        server.startup = startup  # type: ignore[method-assign]
    server.run()


__all__ = ["LOCAL_HOSTS", "MAX_TOP", "allowed_hosts", "check_host", "create_app", "security_headers", "serve"]
