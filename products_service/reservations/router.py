"""reservations routes (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/reservations", tags=["reservations"])
