"""URLs of the trail pages (names in the "audit" namespace)."""
urlpatterns: list = []
