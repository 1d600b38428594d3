"""The API's own description behind the key (production): `/openapi.json` and `/docs`.

In development FastAPI serves both openly. In production a caller must authenticate first, since
the document lists every endpoint and field an attacker would probe.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from serving.deps import require_authenticated

router = APIRouter(dependencies=[Depends(require_authenticated)], include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title)


def install(app: FastAPI) -> None:
    app.include_router(router)
