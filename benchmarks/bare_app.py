"""The ceiling for the serving benchmark: the same stack (uvicorn, uvloop, httptools, FastAPI,
one worker) with an endpoint that reads the body and returns a constant."""

from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
_CONSTANT = b'{"decision":"approve","fraud_score":0.0}'


@app.post("/score")
async def score(request: Request) -> Response:
    await request.body()
    return Response(_CONSTANT, media_type="application/json")
