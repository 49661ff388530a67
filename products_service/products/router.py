"""products routes (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/products", tags=["products"])
