"""warehouses routes (to be written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/warehouses", tags=["warehouses"])
