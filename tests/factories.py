from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from agents.models import Agent
from workspaces.models import Environment, Role, RoleAssignment, ServiceAccount, Workspace
from workspaces.services.platform_accounts import default_account


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    @factory.post_generation
    def password(self, create: bool, extracted: object, **kwargs: object) -> None:
        self.set_password(extracted or "correct-horse-battery")
        if create:
            self.save(update_fields=["password"])


class WorkspaceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Workspace
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Workspace {n}")
    slug = factory.Sequence(lambda n: f"ws-{n}")
    # Tests' workspaces share the default platform account, so their objects carry the <slug>__ prefix there.
    platform_account = factory.LazyFunction(lambda: default_account())
    remote_prefix = factory.LazyAttribute(lambda ws: f"{ws.slug}__")

    @factory.post_generation
    def environments(self, create: bool, extracted: object, **kwargs: object) -> None:
        if not create:
            return
        for name, platform_env, is_prod in (("dev", "development", False), ("staging", "staging", False),
                                            ("prod", "production", True)):
            Environment.objects.get_or_create(workspace=self, name=name,
                                              defaults={"platform_environment": platform_env,
                                                        "is_production": is_prod})


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    auth_mode = Agent.AuthMode.SIGNED


class ServiceAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ServiceAccount

    workspace = factory.SubFactory(WorkspaceFactory)
    name = factory.Sequence(lambda n: f"svc-{n}")


def builtin_role(name: str) -> Role:
    return Role.objects.get(workspace=None, name=name)


def grant(user: object, role_name: str, workspace: Workspace) -> RoleAssignment:
    """Test helper: a direct grant (the services' rules are tested on their own)."""
    return RoleAssignment.objects.create(user=user, role=builtin_role(role_name), workspace=workspace)
