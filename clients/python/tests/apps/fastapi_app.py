"""A FastAPI application for the ASGI tests."""

from typing import Optional

from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items")
async def create_item(item: Item):
    return {"name": item.name, "total": item.price * 2, "tags": item.tags}


@app.post("/login")
async def login(username: str = Form(...), password: str = Form(...)):
    if password != "secret":
        raise HTTPException(status_code=401, detail="bad password")
    return {"user": username}


@app.get("/numbers")
async def numbers():
    async def gen():
        for i in range(10):
            yield f"{i}\n"
    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/sync")
def sync_endpoint():
    return {"sync": True}


@app.get("/boom")
async def boom():
    raise RuntimeError("boom")
