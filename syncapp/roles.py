"""The three roles, as groups; a data migration creates them with their permissions."""
MARKETER = "Marketer"
REVIEWER = "Reviewer"
COMPLIANCE = "Compliance"

# Group -> (app_label, model) pairs whose view/add/change/delete permissions it holds.
ROLE_MODELS = {
    MARKETER: [
        ("connections", "connection"),
        ("syncapp", "sync"),
        ("syncapp", "syncconnection"),
        ("mappings", "fieldmapping"),
        ("syncapp", "syncrun"),
        ("syncapp", "recorderror"),
        ("syncapp", "contact"),
    ],
    REVIEWER: [("syncapp", "contact")],
    COMPLIANCE: [("audit", "auditevent"), ("syncapp", "contact")],
}

# Actions each role may take on those models; the rest stay with superusers.
ROLE_ACTIONS = {
    MARKETER: ("view", "add", "change", "delete"),
    REVIEWER: ("view",),
    COMPLIANCE: ("view",),
}


def user_has_role(user, role: str) -> bool:
    return user.is_active and (user.is_superuser or user.groups.filter(name=role).exists())
