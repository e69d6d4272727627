"""One APIRouter per resource; create_app includes them all. Handlers are module-level functions
that read what they need through FastAPI dependencies (services.web.state), never closures."""
