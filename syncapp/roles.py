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
        ("syncapp", "conflict"),
        ("audit", "auditevent"),
    ],
    REVIEWER: [("syncapp", "contact"), ("syncapp", "conflict"), ("syncapp", "duplicatepair"), ("audit", "auditevent")],
    COMPLIANCE: [("audit", "auditevent"), ("audit", "deletionrequest"),
                 ("syncapp", "contact"), ("syncapp", "conflict")],
}

# Actions each role may take on those models; the rest stay with superusers.
ROLE_ACTIONS = {
    MARKETER: ("view", "add", "change", "delete"),
    REVIEWER: ("view",),
    COMPLIANCE: ("view",),
}

# Exceptions to ROLE_ACTIONS for one model. Reviewers decide conflicts and duplicates;
# marketers may look at the queue, but deciding what a person's data is stays with
# reviewers.
MODEL_ACTIONS = {
    (MARKETER, "conflict"): ("view",),
    # Marketers see contacts; what a person consented to is recorded by reviewers, not
    # by the team that wants to send to them.
    (MARKETER, "contact"): ("view",),
    (REVIEWER, "conflict"): ("view", "change"),
    (REVIEWER, "duplicatepair"): ("view", "change"),
    # Recording a consent statement a person gave outside any system (contact page).
    (REVIEWER, "contact"): ("view", "change"),
    # The trail is read-only for everyone; marketers and reviewers see the events of
    # their syncs (audit.selectors), compliance staff all of them.
    (MARKETER, "auditevent"): ("view",),
    # Compliance staff file and carry out deletion requests; none is ever deleted.
    (COMPLIANCE, "deletionrequest"): ("view", "add", "change"),
}


def roles_ensure(apps=None) -> None:
    """Create the role groups with their permissions; safe to call again.

    Called by the data migration and after every `migrate` or `flush` (post_migrate):
    transactional tests flush every table, groups included, and expect them back.
    """
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    apps = apps or global_apps
    # Permissions are normally created after all migrations, app by app; the groups
    # need those of every app they name, whatever order the apps are migrated in.
    for app_label in {app for models in ROLE_MODELS.values() for app, _ in models}:
        app_config = apps.get_app_config(app_label)
        # Migration state hands out stubs without models_module, which
        # create_permissions takes as "no models"; lend one for the call.
        stub = getattr(app_config, "models_module", None) is None
        if stub:
            app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        if stub:
            app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, models in ROLE_MODELS.items():
        group, _ = Group.objects.get_or_create(name=role)
        codenames = [
            f"{action}_{model}"
            for _, model in models
            for action in MODEL_ACTIONS.get((role, model), ROLE_ACTIONS[role])
        ]
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label__in={app for app, _ in models}, codename__in=codenames
            )
        )


def user_has_role(user, role: str) -> bool:
    return user.is_active and (user.is_superuser or user.groups.filter(name=role).exists())
