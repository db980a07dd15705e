"""Agents whose credential webhook Keyward turned on before the webhook secret moved into a platform workspace
secret still carry the secret as a plain header in their platform config. Queue one sync job for each (in the
outbox, like any change): the drain creates the platform secret and points the header at it. Nothing to do by
hand on upgrade; the periodic drain runs the jobs even if no worker is nudged."""

from django.db import migrations

AGENT_KIND = "agent"  # agents.services.AGENT_KIND, fixed here as migrations must not import app code


def forwards(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    SyncJob = apps.get_model("sync", "SyncJob")
    agents = Agent.objects.filter(credential_webhook=True, credential_webhook_changed_at__isnull=False,
                                  webhook_secret_remote_id="")
    for pk, workspace_id, name in agents.values_list("pk", "workspace_id", "name").iterator():
        if SyncJob.objects.filter(kind=AGENT_KIND, object_id=str(pk), state="pending").exists():
            continue  # a pending job sends the agent's current state, webhook secret included
        SyncJob.objects.create(kind=AGENT_KIND, object_id=str(pk), op="upsert", workspace_id=workspace_id,
                               object_repr=name[:200], payload={})


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0003_agent_webhook_secret_ref"),
        ("sync", "0003_syncjob_request_id"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
