"""URLs of the deletion pages (names in the "audit" namespace)."""
urlpatterns: list = []
