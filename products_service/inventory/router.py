"""inventory routes (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/inventory", tags=["inventory"])
