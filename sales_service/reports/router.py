"""Revenue reports (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/reports", tags=["reports"])
