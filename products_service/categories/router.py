"""categories routes (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/categories", tags=["categories"])
